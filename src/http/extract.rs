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
        // axum decodes lossily (invalid UTF-8 becomes U+FFFD, which would
        // then be stored as if the client had sent it): refuse instead.
        if let Some(field) = parts.uri.query().and_then(non_utf8_param) {
            return Err(ApiError::bad_request(format!(
                "query parameter {field:?} is not valid UTF-8 once percent-decoded"
            )));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|rej| ApiError::bad_request(rej.body_text()))
    }
}

/// Percent-decodes one `application/x-www-form-urlencoded` component the way
/// the query deserializer does (`+` is a space, a malformed `%` stays as it is).
fn form_decode(s: &str) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let pair = bytes
            .get(i + 1..i + 3)
            .and_then(|p| Some((hex(p[0])?, hex(p[1])?)));
        match (bytes[i], pair) {
            (b'%', Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

/// The (lossily decoded, shortened) name of the first query parameter whose
/// name or value is not UTF-8 once percent-decoded.
fn non_utf8_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (form_decode(k), form_decode(v));
        if std::str::from_utf8(&key).is_ok() && std::str::from_utf8(&value).is_ok() {
            return None;
        }
        Some(String::from_utf8_lossy(&key).chars().take(64).collect())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_that_are_not_utf8_are_found_by_parameter() {
        assert_eq!(
            non_utf8_param("name=%FF%FE&format=raw"),
            Some("name".into())
        );
        assert_eq!(non_utf8_param("format=raw&os=a%C3"), Some("os".into()));
        assert_eq!(non_utf8_param("%FF=x").as_deref(), Some("\u{fffd}"));
        for fine in [
            "name=%E5%AE%9E%E9%AA%8C+0&format=raw",
            "name=a%2Fb",
            "name=100%",
            "name=%zz",
            "flag",
            "",
        ] {
            assert_eq!(non_utf8_param(fine), None, "{fine}");
        }
        assert_eq!(form_decode("a+b%20c%2"), b"a b c%2");
        assert_eq!(form_decode("%E5%AE%9E"), "实".as_bytes());
    }
}
