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
use super::extract::{ApiJson, CurrentUser};
use crate::app::AppState;
use crate::auth::{self, SESSION_COOKIE};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
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
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    if body.username.len() > 64 || body.password.len() > crate::users::MAX_PASSWORD_LEN {
        return Err(auth::AuthError::BadCredentials.into());
    }
    let lifetime = std::time::Duration::from_secs(state.config.session_hours * 3600);
    let (user, token) = auth::login(
        &state.pool,
        &state.login_limiter,
        &body.username,
        &body.password,
        addr.ip(),
        lifetime,
    )
    .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        lifetime.as_secs()
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("bad token"))?,
    );
    Ok((headers, Json(json!({ "user": user, "token": token }))))
}

async fn logout(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    auth::logout(&state.pool, &me.token).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pvce_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
    Ok((StatusCode::NO_CONTENT, headers))
}

async fn me(me: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({ "user": me.user }))
}
