//! `/api/auth/*` and `/api/me`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiJson, Cookies, CurrentUser, client_ip, cookie_value};
use crate::auth;
use crate::auth::sso::Protocol;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/me/password", post(change_password))
        .route("/api/auth/providers", get(providers))
        .route(
            "/api/auth/oidc/{id}/start",
            get(|s, p, q, h| start(Protocol::Oidc, s, p, q, h)),
        )
        .route(
            "/api/auth/oidc/{id}/callback",
            get(|s, p, q, h| callback(Protocol::Oidc, s, p, q, h)),
        )
        .route(
            "/api/auth/cas/{id}/start",
            get(|s, p, q, h| start(Protocol::Cas, s, p, q, h)),
        )
        .route(
            "/api/auth/cas/{id}/callback",
            get(|s, p, q, h| callback(Protocol::Cas, s, p, q, h)).post(cas_single_logout),
        )
        .route("/api/auth/ldap/{id}/login", post(ldap_login))
}

/// The campus sign-in providers the login page offers (public).
async fn providers(State(state): State<AppState>) -> Json<Vec<auth::providers::PublicProvider>> {
    Json(state.sso.providers())
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    next: Option<String>,
}

fn origin_of(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    super::origin::own_origin(headers, &state.config)
        .ok_or_else(|| ApiError::bad_request("the request names no host"))
}

fn redirect(to: &str, cookies: &[String]) -> Result<axum::response::Response, ApiError> {
    let mut out = HeaderMap::new();
    out.insert(
        header::LOCATION,
        HeaderValue::from_str(to).map_err(|_| ApiError::bad_request("bad redirect address"))?,
    );
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            out.append(header::SET_COOKIE, v);
        }
    }
    Ok((StatusCode::SEE_OTHER, out).into_response())
}

/// The login page's provider button: off to the provider (OpenID Connect or
/// CAS), the flow bound to this browser by a cookie.
async fn start(
    protocol: Protocol,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let origin = origin_of(&state, &headers)?;
    let started = state
        .sso
        .start(protocol, &id, &origin, q.next.as_deref())
        .await?;
    let cookies = Cookies::for_request(&state.config, &headers);
    redirect(
        &started.url,
        &[cookies.set_sso_flow(Some(&started.flow_cookie))],
    )
}

/// What a provider sends the browser back with: OpenID Connect a `code` (or
/// an `error`), CAS a service `ticket`.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
    ticket: Option<String>,
}

/// The provider sends the browser back here: the session cookie, the flow
/// cookie cleared, and back to the page the user started from.
async fn callback(
    protocol: Protocol,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let origin = origin_of(&state, &headers)?;
    let flow = cookie_value(&headers, auth::sso::FLOW_COOKIE);
    let (code, error) = match protocol {
        Protocol::Oidc => (q.code, q.error),
        Protocol::Cas => (q.ticket, None),
    };
    let back = auth::sso::Callback {
        state: &q.state,
        code: code.as_deref(),
        error: error.as_deref(),
        flow_cookie: flow.as_deref(),
    };
    let signed_in = state.sso.callback(protocol, &id, &origin, back).await?;
    let cookies = Cookies::for_request(&state.config, &headers);
    let lifetime = std::time::Duration::from_secs(state.config.session_hours * 3600);
    redirect(
        &signed_in.next,
        &[
            cookies.set_session(&signed_in.token, lifetime),
            cookies.set_sso_flow(None),
        ],
    )
}

#[derive(Debug, Deserialize)]
struct SingleLogoutBody {
    #[serde(rename = "logoutRequest")]
    logout_request: String,
}

/// The CAS server's single sign-out (a back-channel POST to the service
/// URL): ends the session that ticket opened.
async fn cas_single_logout(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<axum::Form<SingleLogoutBody>, axum::extract::rejection::FormRejection>,
) -> Result<StatusCode, ApiError> {
    let axum::Form(body) = body.map_err(|_| {
        ApiError::bad_request("expected a form with logoutRequest (CAS single sign-out)")
    })?;
    state
        .sso
        .cas_single_logout(&id, &body.logout_request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
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
    let form = SignInForm::read(&state, &headers, addr, body)?;
    let lifetime = std::time::Duration::from_secs(state.config.session_hours * 3600);
    let signed_in = auth::login(&state.pool, &state.sign_in, form.attempt(), lifetime).await?;
    signed_in_answer(&form.cookies, &signed_in, lifetime)
}

/// What a sign-in form (the local one or an LDAP provider's) takes from its
/// request: the credentials, the cookies for this request's origin, this
/// browser's device cookie and address.
struct SignInForm {
    body: LoginBody,
    cookies: Cookies,
    device: Option<String>,
    source: std::net::IpAddr,
}

impl SignInForm {
    /// Oversized credentials are refused as bad ones, before any hashing.
    fn read(
        state: &AppState,
        headers: &HeaderMap,
        addr: SocketAddr,
        body: LoginBody,
    ) -> Result<Self, ApiError> {
        if body.username.len() > 64 || body.password.len() > crate::users::MAX_PASSWORD_LEN {
            return Err(auth::AuthError::BadCredentials.into());
        }
        let cookies = Cookies::for_request(&state.config, headers);
        let device = cookie_value(headers, cookies.device_name());
        Ok(Self {
            body,
            cookies,
            device,
            source: client_ip(&state.config, headers, addr.ip()),
        })
    }

    fn attempt(&self) -> auth::Attempt<'_> {
        auth::Attempt {
            username: &self.body.username,
            password: &self.body.password,
            source: self.source,
            device_cookie: self.device.as_deref(),
        }
    }
}

/// The answer to a successful sign-in: the session and device cookies,
/// and the user with the token (for API clients).
fn signed_in_answer(
    cookies: &Cookies,
    signed_in: &auth::SignedIn,
    lifetime: std::time::Duration,
) -> Result<(HeaderMap, Json<serde_json::Value>), ApiError> {
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

/// The login form of an LDAP provider: the same body and answer as the
/// local form.
async fn ldap_login(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let form = SignInForm::read(&state, &headers, addr, body)?;
    let signed_in = state
        .sso
        .ldap_login(&state.sign_in, &id, form.attempt())
        .await?;
    let lifetime = std::time::Duration::from_secs(state.config.session_hours * 3600);
    signed_in_answer(&form.cookies, &signed_in, lifetime)
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    me: CurrentUser,
) -> Result<impl IntoResponse, ApiError> {
    let origin = super::origin::own_origin(&headers, &state.config).unwrap_or_default();
    let campus = state.sso.logout(&me.user, &me.token, &origin).await?;
    // The device cookie stays: it is what lets this browser in during an attack.
    let mut out = HeaderMap::new();
    for cookie in Cookies::for_request(&state.config, &headers).clear_sessions(&headers) {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            out.append(header::SET_COOKIE, v);
        }
    }
    // A campus session: the browser also visits the provider's logout.
    Ok(match campus {
        Some(url) => (StatusCode::OK, out, Json(json!({ "redirect": url }))).into_response(),
        None => (StatusCode::NO_CONTENT, out).into_response(),
    })
}

async fn me(me: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({ "user": me.user }))
}
