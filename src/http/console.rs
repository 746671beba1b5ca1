//! `POST /api/vms/{id}/console` (issue a token), `GET /ws/console` (the
//! relay) and `GET /api/vms/{id}/console.vv` (a virt-viewer file with a
//! one-time console password; the response is never cached or logged).

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, IdPath};
use crate::console::{self, ConsoleError};
use crate::libvirt::GraphicsKind;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms/{id}/console", post(issue))
        .route("/api/vms/{id}/console.vv", get(viewer_file))
        .route("/ws/console", get(connect))
}

fn protocol(kind: GraphicsKind) -> &'static str {
    match kind {
        GraphicsKind::Vnc => "vnc",
        GraphicsKind::Spice => "spice",
    }
}

async fn issue(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.vms.get_for(&me.user, id).await?;
    let (vm, _, _, kind) = state.vms.console_endpoint(id).await?;
    let node_id = vm.node_id.ok_or_else(ApiError::not_found)?;
    let token = state.console.issue(
        vm.id,
        me.user.id,
        node_id,
        vm.last_started_at.clone().unwrap_or_default(),
    );
    Ok(Json(json!({
        "token": token,
        "url": format!("/ws/console?token={token}"),
        "protocol": protocol(kind),
        "expires_in": state.console.ttl.as_secs(),
    })))
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    token: String,
}

async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ConnectQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Browsers always send an Origin on WebSockets: it must pass the one
    // Origin rule. Tools send none; the single-use token gates them.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = super::origin::own_origin(&headers, &state.config);
        let ok = origin.to_str().is_ok_and(|o| {
            super::origin::allowed(o, own.as_deref(), &state.config.allowed_origins)
        });
        if !ok {
            return Err(ConsoleError::BadOrigin.into());
        }
    }
    let ticket = state.console.redeem(&q.token)?;
    // A browser also sends its session cookie: a token issued to someone else
    // is refused (tools without a cookie are gated by the token alone).
    if let Some(session) = super::extract::cookie_token(&headers)
        && let Ok(user) = crate::auth::authenticate(&state.pool, &session).await
        && user.id != ticket.user_id
    {
        return Err(ConsoleError::BadToken.into());
    }
    // The token is void if the VM stopped, restarted or moved since it was issued.
    let (vm, target) = state
        .vms
        .console_target(ticket.vm_id)
        .await
        .map_err(|_| ConsoleError::NotRunning)?;
    if vm.node_id != Some(ticket.node_id)
        || vm.last_started_at.clone().unwrap_or_default() != ticket.boot
    {
        return Err(ConsoleError::BadToken.into());
    }
    Ok(state.console.clone().upgrade(ws, ticket, target))
}

async fn viewer_file(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    state.vms.get_for(&me.user, id).await?;
    let ttl = std::time::Duration::from_secs(state.config.console_ticket_ttl_secs);
    let t = state.vms.viewer_password(id, ttl).await?;
    let body = console::virt_viewer_file(t.kind, &t.host, t.port, &t.password, &t.title);
    let filename = format!("pvce-{}.vv", t.vm.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-virt-viewer".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}
