//! `/api/auth/*` and `/api/me`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiJson, Cookies, CurrentUser, client_ip, cookie_value};
use crate::auth;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/me/password", post(change_password))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// A user's change of their own password (also what ends a forced change
/// after an admin's reset).
async fn change_password(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = crate::users::change_own_password(
        &state.pool,
        &me.user,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(Json(json!({ "user": user })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    if body.username.len() > 64 || body.password.len() > crate::users::MAX_PASSWORD_LEN {
        return Err(auth::AuthError::BadCredentials.into());
    }
    let cookies = Cookies::for_request(&state.config, &headers);
    let device = cookie_value(&headers, cookies.device_name());
    let lifetime = std::time::Duration::from_secs(state.config.session_hours * 3600);
    let signed_in = auth::login(
        &state.pool,
        &state.sign_in,
        auth::Attempt {
            username: &body.username,
            password: &body.password,
            source: client_ip(&state.config, &headers, addr.ip()),
            device_cookie: device.as_deref(),
        },
        lifetime,
    )
    .await?;
    let mut out = HeaderMap::new();
    for cookie in [
        cookies.set_session(&signed_in.token, lifetime),
        cookies.set_device(&signed_in.device_cookie),
    ] {
        out.append(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("bad token"))?,
        );
    }
    Ok((
        out,
        Json(json!({ "user": signed_in.user, "token": signed_in.token })),
    ))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    me: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    auth::logout(&state.pool, &me.user, &me.token).await?;
    // The device cookie stays: it is what lets this browser in during an attack.
    let mut out = HeaderMap::new();
    for cookie in Cookies::for_request(&state.config, &headers).clear_sessions(&headers) {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            out.append(header::SET_COOKIE, v);
        }
    }
    Ok((StatusCode::NO_CONTENT, out))
}

async fn me(me: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({ "user": me.user }))
}
