//! Request extractors that fail with API.md's JSON errors instead of axum's
//! plain-text rejections.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{self, Role, SESSION_COOKIE};
use crate::users::User;

/// The logged-in user (session cookie or `Authorization: Bearer`).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub token: String,
}

impl CurrentUser {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        auth::require(&self.user, roles).map_err(Into::into)
    }
}

/// The session token of a request, if any: bearer header first, then cookie.
pub fn session_token(parts: &Parts) -> Option<String> {
    bearer_token(&parts.headers).or_else(|| cookie_token(&parts.headers))
}

/// The token of an `Authorization: Bearer` header, if any.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// The session token carried in the `pvce_session` cookie, if any.
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = session_token(parts).ok_or(auth::AuthError::Unauthenticated)?;
        if token.len() > 256 {
            return Err(auth::AuthError::Unauthenticated.into());
        }
        let user = auth::authenticate(&state.pool, &token).await?;
        Ok(CurrentUser { user, token })
    }
}

/// JSON body with unknown fields and type errors reported as 400 JSON errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let status = rej.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "unsupported_media_type"
                } else {
                    "bad_request"
                };
                // axum says 422 for well-formed JSON of the wrong shape; API.md says 400.
                let status = match status {
                    StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError::new(status, code, rej.body_text()))
            }
        }
    }
}

/// A UUID path parameter; anything else is simply "not found".
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found())?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::not_found())
    }
}

/// Two UUID path parameters (e.g. course and student).
#[derive(Debug, Clone, Copy)]
pub struct IdPath2(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath2 {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found())?;
        match (Uuid::parse_str(&a), Uuid::parse_str(&b)) {
            (Ok(a), Ok(b)) => Ok(IdPath2(a, b)),
            _ => Err(ApiError::not_found()),
        }
    }
}

/// Query string with 400 JSON errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|rej| ApiError::bad_request(rej.body_text()))
    }
}

/// A text body (the CSV import): over axum's body limit → 413 `too_large`,
/// not UTF-8 → 400 `bad_request`, both as JSON errors.
#[derive(Debug)]
pub struct ApiText(pub String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        String::from_request(req, state)
            .await
            .map(ApiText)
            .map_err(|rej| match rej.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {TEXT_LIMIT_MIB} MiB"),
                ),
                StatusCode::BAD_REQUEST => ApiError::bad_request("the body is not UTF-8 text"),
                status => ApiError::new(status, "bad_request", rej.body_text()),
            })
    }
}

/// axum's default body limit, which applies to [`ApiText`] and [`ApiJson`].
pub const TEXT_LIMIT_MIB: usize = 2;
