//! Request extractors that fail with API.md's JSON errors instead of axum's
//! plain-text rejections.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::{self, Role, SECURE_SESSION_COOKIE, SESSION_COOKIE};
use crate::config::Config;
use crate::state::AppState;
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

/// The session token carried in a session cookie of either name
/// (`__Host-pvce_session` first, then `pvce_session`), if any: whether a
/// request is cookie-authenticated at all. Authentication itself accepts only
/// the name in use for the request ([`Cookies::session_name`]).
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    cookie_value(headers, SECURE_SESSION_COOKIE).or_else(|| cookie_value(headers, SESSION_COOKIE))
}

/// The value of the cookie `name`, if the request carries one.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The cookies of one request's kind of connection. Over https (the public
/// URL is https, or a trusted proxy says `X-Forwarded-Proto: https`) they are
/// `Secure` and `__Host-` prefixed (`Path=/`, no `Domain`), so neither plain
/// http nor a sibling subdomain can plant or read them; over http they keep
/// their plain names. Both are HttpOnly and SameSite=Lax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    pub fn for_request(config: &Config, headers: &axum::http::HeaderMap) -> Self {
        let public_https = config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        // A chain of proxies may list several; the first is the client's side.
        let forwarded_https = config.trust_forwarded_proto
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        Self {
            secure: public_https || forwarded_https,
        }
    }

    pub fn session_name(self) -> &'static str {
        if self.secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    pub fn device_name(self) -> &'static str {
        if self.secure {
            auth::SECURE_DEVICE_COOKIE
        } else {
            auth::DEVICE_COOKIE
        }
    }

    fn attributes(self, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}")
    }

    /// `Set-Cookie` value opening a session.
    pub fn set_session(self, token: &str, max_age: std::time::Duration) -> String {
        format!(
            "{}={token}{}",
            self.session_name(),
            self.attributes(max_age.as_secs())
        )
    }

    /// `Set-Cookie` values ending the session: the name in use, and the other
    /// name too if the browser still sends it (the setting changed).
    pub fn clear_sessions(self, headers: &axum::http::HeaderMap) -> Vec<String> {
        let other = Cookies {
            secure: !self.secure,
        };
        let mut out = vec![format!("{}={}", self.session_name(), self.attributes(0))];
        if cookie_value(headers, other.session_name()).is_some() {
            out.push(format!("{}={}", other.session_name(), other.attributes(0)));
        }
        out
    }

    /// `Set-Cookie` value binding a campus sign-in flow to this browser
    /// ([`auth::sso`]); `None` clears it. Lax: it must come back on the
    /// provider's top-level redirect to the callback.
    pub fn set_sso_flow(self, state: Option<&str>) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        let max_age = match state {
            Some(_) => auth::sso::FLOW_TTL.as_secs(),
            None => 0,
        };
        format!(
            "{}={}; HttpOnly; SameSite=Lax; Path=/api/auth/; Max-Age={max_age}{secure}",
            auth::sso::FLOW_COOKIE,
            state.unwrap_or("")
        )
    }

    /// `Set-Cookie` value of the device cookie ([`auth::device`]).
    pub fn set_device(self, value: &str) -> String {
        let max_age = u64::try_from(auth::device::DEVICE_COOKIE_DAYS * 86_400).unwrap_or(0);
        format!("{}={value}{}", self.device_name(), self.attributes(max_age))
    }
}

/// The client's address for the sign-in limits: the TCP peer, or behind a
/// trusted proxy (`--trust-forwarded-for`) the last `X-Forwarded-For` entry,
/// the one that proxy appended (earlier entries are the client's own claims).
pub fn client_ip(
    config: &Config,
    headers: &axum::http::HeaderMap,
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    if !config.trust_forwarded_for {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        // Only the cookie name in use for this kind of connection: over https
        // a plain `pvce_session` may have been planted over http.
        let cookies = Cookies::for_request(&state.config, &parts.headers);
        let token = bearer_token(&parts.headers)
            .or_else(|| cookie_value(&parts.headers, cookies.session_name()))
            .ok_or(auth::AuthError::Unauthenticated)?;
        if token.len() > 256 {
            return Err(auth::AuthError::Unauthenticated.into());
        }
        let user = auth::authenticate(&state.pool, &token).await?;
        crate::users::check_password_change(&user, parts.method.as_str(), parts.uri.path())?;
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

    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn https_public_url_or_trusted_proxy_makes_cookies_secure() {
        let mut c = Config::for_data_dir("/tmp/x");
        let xfp = headers(&[("x-forwarded-proto", "https")]);
        assert!(!Cookies::for_request(&c, &HeaderMap::new()).secure);
        // An untrusted X-Forwarded-Proto changes nothing.
        assert!(!Cookies::for_request(&c, &xfp).secure);
        c.trust_forwarded_proto = true;
        assert!(Cookies::for_request(&c, &xfp).secure);
        assert!(!Cookies::for_request(&c, &headers(&[("x-forwarded-proto", "http")])).secure);
        c.trust_forwarded_proto = false;
        c.public_url = Some("https://lab.example.edu".into());
        assert!(Cookies::for_request(&c, &HeaderMap::new()).secure);
        c.public_url = Some("http://lab.example.edu".into());
        assert!(!Cookies::for_request(&c, &HeaderMap::new()).secure);
    }

    #[test]
    fn secure_cookies_are_host_prefixed() {
        let s = Cookies { secure: true }.set_session("tok", std::time::Duration::from_secs(60));
        assert_eq!(
            s,
            "__Host-pvce_session=tok; HttpOnly; SameSite=Lax; Path=/; Max-Age=60; Secure"
        );
        let p = Cookies { secure: false }.set_session("tok", std::time::Duration::from_secs(60));
        assert_eq!(
            p,
            "pvce_session=tok; HttpOnly; SameSite=Lax; Path=/; Max-Age=60"
        );
        assert!(
            Cookies { secure: true }
                .set_device("d")
                .starts_with("__Host-pvce_device=d;")
        );
        // Logout clears the name in use, and the other one if it is still sent.
        let both = headers(&[("cookie", "pvce_session=a; __Host-pvce_session=b")]);
        let cleared = Cookies { secure: true }.clear_sessions(&both);
        assert_eq!(cleared.len(), 2);
        assert!(cleared[0].starts_with("__Host-pvce_session=;") && cleared[0].ends_with("Secure"));
        assert!(cleared[1].starts_with("pvce_session=;") && cleared[1].contains("Max-Age=0"));
        assert_eq!(
            Cookies { secure: false }
                .clear_sessions(&HeaderMap::new())
                .len(),
            1
        );
    }

    #[test]
    fn cookie_token_reads_either_name() {
        assert_eq!(
            cookie_token(&headers(&[("cookie", "x=1; pvce_session=p")])),
            Some("p".into())
        );
        assert_eq!(
            cookie_token(&headers(&[(
                "cookie",
                "pvce_session=p; __Host-pvce_session=s"
            )])),
            Some("s".into())
        );
        assert_eq!(cookie_token(&headers(&[("cookie", "other=1")])), None);
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let peer: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 10.1.2.3")]);
        let mut c = Config::for_data_dir("/tmp/x");
        assert_eq!(client_ip(&c, &h, peer), peer);
        c.trust_forwarded_for = true;
        assert_eq!(client_ip(&c, &h, peer).to_string(), "10.1.2.3");
        assert_eq!(
            client_ip(&c, &headers(&[("x-forwarded-for", "junk")]), peer),
            peer
        );
        assert_eq!(client_ip(&c, &HeaderMap::new(), peer), peer);
    }
}
