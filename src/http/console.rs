//! `POST /api/vms/{id}/console` (issue a token; watching a SPICE console
//! answers with the live picture's URL instead), `GET /ws/console` (the
//! relay), `POST /api/vms/{id}/serial` and `GET /ws/serial` (the same for the
//! rescue serial console) and `GET /api/vms/{id}/console.vv` (a virt-viewer file with a
//! one-time console password; the response is never cached or logged).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, IdPath};
use crate::console::ws::Upgrade;
use crate::console::{ConsoleError, ConsoleKind, Grant};
use crate::libvirt::GraphicsKind;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms/{id}/console", post(issue))
        .route("/api/vms/{id}/console.vv", get(viewer_file))
        .route(
            "/ws/console",
            get(|s, h, q, ws| connect(ConsoleKind::Graphics, s, h, q, ws)),
        )
        .route("/api/vms/{id}/serial", post(issue_serial))
        .route(
            "/ws/serial",
            get(|s, h, q, ws| connect(ConsoleKind::Serial, s, h, q, ws)),
        )
}

fn protocol(kind: GraphicsKind) -> &'static str {
    match kind {
        GraphicsKind::Vnc => "vnc",
        GraphicsKind::Spice => "spice",
    }
}

/// The optional body of `POST /api/vms/{id}/console`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    /// Watch only: the proxy drops the session's keyboard and mouse input.
    #[serde(default)]
    view_only: bool,
}

async fn issue(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    // No body (what the desktop sends) is a console with control.
    let opts: IssueBody = if body.iter().all(u8::is_ascii_whitespace) {
        IssueBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let grant = state.console.issue(&me.user, id, opts.view_only).await?;
    Ok(Json(grant_json(grant, opts.view_only)))
}

/// The answer to a console request: a token for the WebSocket (`mode`
/// `console`), or the live picture to fetch (`mode` `picture`).
pub(super) fn grant_json(grant: Grant, view_only: bool) -> serde_json::Value {
    match grant {
        Grant::Token(t) => json!({
            "mode": "console",
            "url": format!("/ws/console?token={}", t.token),
            "token": t.token,
            "protocol": protocol(t.protocol),
            "expires_in": t.expires_in.as_secs(),
            "view_only": view_only,
        }),
        Grant::Picture { vm_id, protocol: p } => json!({
            "mode": "picture",
            "picture_url": format!("/api/vms/{vm_id}/screen"),
            "protocol": protocol(p),
            "view_only": true,
        }),
    }
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    token: String,
}

/// `GET /ws/console` and `GET /ws/serial`: a token redeemed, then relayed.
async fn connect(
    kind: ConsoleKind,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ConnectQuery>,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let session_user = browser_user(&state, &headers).await?;
    Ok(state
        .console
        .connect(kind, ws, &q.token, session_user)
        .await?)
}

/// A WebSocket upgrade request (RFC 6455 checks in [`Upgrade::from_parts`]);
/// anything else is a 400.
impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Upgrade::from_parts(parts)?)
    }
}

async fn issue_serial(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = state.console.issue_serial(&me.user, id).await?;
    Ok(Json(json!({
        "url": format!("/ws/serial?token={}", t.token),
        "token": t.token,
        "protocol": "serial",
        "expires_in": t.expires_in.as_secs(),
    })))
}

/// The checks both console WebSockets make before redeeming a token: the
/// Origin rule, and whose login session came with the request (if any).
async fn browser_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<uuid::Uuid>, ApiError> {
    // Browsers always send an Origin on WebSockets: it must pass the one
    // Origin rule. Tools send none; the single-use token gates them.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = super::origin::own_origin(headers, &state.config);
        let ok = origin.to_str().is_ok_and(|o| {
            super::origin::allowed(o, own.as_deref(), &state.config.allowed_origins)
        });
        if !ok {
            return Err(ConsoleError::BadOrigin.into());
        }
    }
    // A browser also sends its session cookie: whose session it is.
    Ok(match super::extract::cookie_token(headers) {
        Some(session) => crate::auth::authenticate(&state.pool, &session)
            .await
            .ok()
            .map(|u| u.id),
        None => None,
    })
}

async fn viewer_file(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let t = state.console.viewer_password(&me.user, id).await?;
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
        t.file(),
    )
        .into_response())
}
