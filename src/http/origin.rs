//! The Origin rule (cross-site request forgery), one layer over the whole router.
//!
//! A browser attaches the session cookie to any request to this server, also
//! one a foreign page makes (a form post, a `fetch` with `no-cors`). So a
//! request authenticated by the cookie — session cookie present, no
//! `Authorization: Bearer` — whose method is not GET/HEAD/OPTIONS must show
//! where it comes from: an `Origin` that is the server's own or an allowed one
//! (`--allowed-origins`), or, without an `Origin`, `Sec-Fetch-Site:
//! same-origin`. Anything else is 403 `bad_origin` before a handler runs.
//! Bearer-token requests are unaffected (a foreign page cannot set that
//! header). A login with a foreign `Origin` is refused too (login CSRF: it
//! would sign the victim's browser into the attacker's account).
//!
//! The server's own origin is `--public-url` when set, else the request's
//! `Host` with the scheme `http` (`https` when `--trust-forwarded-proto` and
//! the proxy says `X-Forwarded-Proto: https`). The same rule
//! ([`allowed`]) gates the console WebSocket (src/http/console.rs).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::extract::{bearer_token, cookie_token};
use crate::config::Config;
use crate::state::AppState;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    #[error(
        "cross-site request refused: the Origin {0:?} is not this server's (allowed origins are set with --allowed-origins)"
    )]
    Foreign(String),
    #[error(
        "a request authenticated by the session cookie must carry this server's Origin (or Sec-Fetch-Site: same-origin); scripts should send Authorization: Bearer <token>"
    )]
    Missing,
}

/// `scheme://host[:port]` lower-cased, without a default port (what browsers send).
fn normalise(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.starts_with(scheme)
            && let Some(stripped) = o.strip_suffix(port)
        {
            return stripped.to_owned();
        }
    }
    o
}

/// The server's own origin for this request (see the module doc); `None`
/// when it can't be told (no public URL and no `Host`).
pub fn own_origin(headers: &HeaderMap, config: &Config) -> Option<String> {
    if let Some(url) = &config.public_url {
        return Some(normalise(url));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok())?;
    let https = config.trust_forwarded_proto
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    Some(normalise(&format!("{scheme}://{host}")))
}

/// The one rule: `origin` is the server's own or one of the allowed origins.
pub fn allowed(origin: &str, own: Option<&str>, allow: &[String]) -> bool {
    let origin = normalise(origin);
    own.is_some_and(|o| normalise(o) == origin) || allow.iter().any(|a| normalise(a) == origin)
}

/// The decision for one request, from its method, path and headers.
pub fn decide(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    config: &Config,
) -> Result<(), OriginError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("?"));
    let own = own_origin(headers, config);
    let check = |o: &str| {
        if allowed(o, own.as_deref(), &config.allowed_origins) {
            Ok(())
        } else {
            Err(OriginError::Foreign(o.chars().take(200).collect()))
        }
    };
    if path == "/api/auth/login" {
        // No session is used here; only a foreign page's attempt is refused.
        return origin.map_or(Ok(()), check);
    }
    let cookie_auth = bearer_token(headers).is_none() && cookie_token(headers).is_some();
    if !cookie_auth {
        return Ok(());
    }
    match origin {
        Some(o) => check(o),
        None => {
            let same = headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("same-origin"));
            if same {
                Ok(())
            } else {
                Err(OriginError::Missing)
            }
        }
    }
}

/// The middleware applied to the whole router.
pub async fn check(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    decide(req.method(), req.uri().path(), req.headers(), &state.config)?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn config() -> Config {
        Config::for_data_dir("/nonexistent")
    }

    const COOKIE: (&str, &str) = ("cookie", "pvce_session=abc");

    #[test]
    fn the_rule_is_own_origin_or_allowed() {
        let own = Some("http://lab.example:8080");
        assert!(allowed("http://lab.example:8080", own, &[]));
        assert!(allowed("HTTP://Lab.Example:8080/", own, &[]));
        assert!(!allowed("https://lab.example:8080", own, &[]));
        assert!(!allowed("http://evil.example", own, &[]));
        assert!(!allowed("null", own, &[]));
        assert!(allowed(
            "http://ui.example",
            own,
            &["http://ui.example/".into()]
        ));
        assert!(!allowed("http://lab.example", None, &[]));
        assert!(allowed(
            "https://lab.example",
            Some("https://lab.example:443"),
            &[]
        ));
    }

    #[test]
    fn own_origin_from_public_url_or_host() {
        let mut c = config();
        let h = headers(&[("host", "Lab.example:8080"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            own_origin(&h, &c).as_deref(),
            Some("http://lab.example:8080")
        );
        c.trust_forwarded_proto = true;
        assert_eq!(
            own_origin(&h, &c).as_deref(),
            Some("https://lab.example:8080")
        );
        c.public_url = Some("https://lab.example.edu".into());
        assert_eq!(
            own_origin(&h, &c).as_deref(),
            Some("https://lab.example.edu")
        );
        assert_eq!(own_origin(&HeaderMap::new(), &config()), None);
    }

    #[test]
    fn cookie_requests_need_their_origin() {
        let c = config();
        let post = Method::POST;
        let p = "/api/users/import";
        let foreign = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("origin", "http://evil.example"),
        ]);
        assert!(matches!(
            decide(&post, p, &foreign, &c),
            Err(OriginError::Foreign(_))
        ));
        // Safe methods pass whatever they carry.
        assert_eq!(decide(&Method::GET, p, &foreign, &c), Ok(()));
        assert_eq!(decide(&Method::OPTIONS, p, &foreign, &c), Ok(()));
        let own = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("origin", "http://lab.example"),
        ]);
        assert_eq!(decide(&post, p, &own, &c), Ok(()));
        assert_eq!(decide(&Method::DELETE, p, &own, &c), Ok(()));
        let fetch_site = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(decide(&post, p, &fetch_site, &c), Ok(()));
        let cross = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(decide(&post, p, &cross, &c), Err(OriginError::Missing));
        let bare = headers(&[("host", "lab.example"), COOKIE]);
        assert_eq!(decide(&post, p, &bare, &c), Err(OriginError::Missing));
        // Sec-Fetch-Site does not override a foreign Origin.
        let both = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(decide(&post, p, &both, &c).is_err());
    }

    #[test]
    fn bearer_and_anonymous_requests_are_not_cookie_authenticated() {
        let c = config();
        let bearer = headers(&[
            ("host", "lab.example"),
            COOKIE,
            ("authorization", "Bearer t"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(
            decide(&Method::POST, "/api/vms/x/reset", &bearer, &c),
            Ok(())
        );
        let anon = headers(&[("host", "lab.example"), ("origin", "http://evil.example")]);
        assert_eq!(decide(&Method::POST, "/api/vms/x/reset", &anon, &c), Ok(()));
        let other_cookie = headers(&[("host", "lab.example"), ("cookie", "theme=dark")]);
        assert_eq!(
            decide(&Method::POST, "/api/vms/x/reset", &other_cookie, &c),
            Ok(())
        );
    }

    #[test]
    fn login_refuses_only_a_foreign_origin() {
        let c = config();
        let login = "/api/auth/login";
        let foreign = headers(&[("host", "lab.example"), ("origin", "http://evil.example")]);
        assert!(decide(&Method::POST, login, &foreign, &c).is_err());
        let own = headers(&[("host", "lab.example"), ("origin", "http://lab.example")]);
        assert_eq!(decide(&Method::POST, login, &own, &c), Ok(()));
        // Tools send no Origin (and a stale cookie doesn't matter here).
        let tool = headers(&[("host", "lab.example"), COOKIE]);
        assert_eq!(decide(&Method::POST, login, &tool, &c), Ok(()));
    }
}
