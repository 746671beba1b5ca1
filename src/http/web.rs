//! The web UI (student, teacher and admin views), embedded in the binary.
//!
//! The app is plain ES modules in `web/app/` (no bundler). Third-party
//! front-end code comes from npm at build time (`build.rs` runs `npm ci` in
//! `web/`): noVNC's ES modules are embedded from
//! `web/node_modules/@novnc/novnc/` and served under `/vendor/novnc/` (`core/`
//! plus the `vendor/pako` it imports), and uPlot's ES module and stylesheet
//! (the admin charts) under `/vendor/uplot/`, and xterm.js's ES module and
//! stylesheet (the rescue serial console) under `/vendor/xterm/`; nothing else from `node_modules` (e.g.
//! Playwright, a test-only dev dependency) is embedded.
//!
//! Routes: `GET /` and any unknown non-API path without a file extension →
//! `index.html` (the app routes on the URL fragment); app files by name;
//! `/vendor/novnc/…`. Unknown paths under `/api/` and `/ws/` (and non-GET
//! requests) get the API's JSON 404. Every response carries a strict
//! Content-Security-Policy; files are revalidated with their SHA-256 as ETag.
//!
//! In debug builds rust-embed reads the files from disk at run time, so
//! editing `web/` needs no rebuild; release builds embed them.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use rust_embed::{EmbeddedFile, RustEmbed};

/// The app's own files.
#[derive(RustEmbed)]
#[folder = "web/app/"]
struct App;

/// noVNC's ES modules, from npm (`@novnc/novnc`), served as `/vendor/novnc/core/…`.
#[derive(RustEmbed)]
#[folder = "web/node_modules/@novnc/novnc/core/"]
struct NoVncCore;

/// What noVNC's core imports from `../vendor/` (pako, with its licence).
#[derive(RustEmbed)]
#[folder = "web/node_modules/@novnc/novnc/vendor/"]
struct NoVncVendor;

/// uPlot (the admin views' charts), from npm (`uplot`), served as
/// `/vendor/uplot/…`: its ES module and stylesheet only.
#[derive(RustEmbed)]
#[folder = "web/node_modules/uplot/dist/"]
#[include = "uPlot.esm.js"]
#[include = "uPlot.min.css"]
struct UPlot;

/// xterm.js (the rescue serial console), from npm (`@xterm/xterm`), served
/// as `/vendor/xterm/…`: its ES module and stylesheet only.
#[derive(RustEmbed)]
#[folder = "web/node_modules/@xterm/xterm/"]
#[include = "lib/xterm.mjs"]
#[include = "css/xterm.css"]
struct XTerm;

/// The policy sent with every response of the UI: our own scripts only, no
/// inline script, WebSockets for the console, data:/blob: images (noVNC's cursor).
pub const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; \
    img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const VENDOR_PREFIX: &str = "vendor/novnc/";
const UPLOT_PREFIX: &str = "vendor/uplot/";
const XTERM_PREFIX: &str = "vendor/xterm/";

/// The UI's routes. They don't touch the application state, so the router
/// fits any state type: `.merge(pvce::web::router())` into the API router.
/// It has no fallback of its own (axum refuses to merge two fallbacks); its
/// catch-all route answers unknown API paths with the API's JSON 404.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/{*path}", any(asset))
}

async fn index(method: Method, headers: HeaderMap) -> Response {
    serve_index(&method, &headers)
}

async fn asset(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if is_api_path(path) || (method != Method::GET && method != Method::HEAD) {
        return api_not_found();
    }
    if let Some(rest) = path.strip_prefix(VENDOR_PREFIX) {
        let file = if let Some(p) = rest.strip_prefix("core/") {
            NoVncCore::get(p)
        } else if let Some(p) = rest.strip_prefix("vendor/") {
            NoVncVendor::get(p)
        } else {
            None
        };
        return match file {
            Some(file) => serve(&method, &headers, rest, file),
            None => not_found(),
        };
    }
    if let Some(rest) = path.strip_prefix(UPLOT_PREFIX) {
        return match UPlot::get(rest) {
            Some(file) => serve(&method, &headers, rest, file),
            None => not_found(),
        };
    }
    if let Some(rest) = path.strip_prefix(XTERM_PREFIX) {
        return match XTerm::get(rest) {
            Some(file) => serve(&method, &headers, rest, file),
            None => not_found(),
        };
    }
    match App::get(path) {
        Some(file) => serve(&method, &headers, path, file),
        // A missing file (it has an extension) is a 404, so a broken module
        // import fails visibly; any other path is a route of the app.
        None if has_extension(path) => not_found(),
        None => serve_index(&method, &headers),
    }
}

fn is_api_path(path: &str) -> bool {
    ["api", "ws", "healthz", "metrics"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn has_extension(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

fn serve_index(method: &Method, headers: &HeaderMap) -> Response {
    match App::get("index.html") {
        Some(file) => serve(method, headers, "index.html", file),
        None => not_found(),
    }
}

fn content_type(path: &str, file: &EmbeddedFile) -> String {
    let ext = path.rsplit('.').next().unwrap_or_default();
    match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8".to_owned(),
        "html" => "text/html; charset=utf-8".to_owned(),
        "css" => "text/css; charset=utf-8".to_owned(),
        "json" => "application/json".to_owned(),
        "txt" => "text/plain; charset=utf-8".to_owned(),
        _ => file.metadata.mimetype().to_owned(),
    }
}

fn serve(method: &Method, req: &HeaderMap, path: &str, file: EmbeddedFile) -> Response {
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let mut headers = security_headers();
    // Always revalidate (cheap: 304 by ETag), so an upgraded server never
    // mixes old and new modules in a browser cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let matches = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&content_type(path, &file)) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.data.len()));
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    (StatusCode::OK, headers, body).into_response()
}

fn security_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h
}

/// A missing file of the UI: the API's JSON 404 (every error body is), with
/// the UI's security headers.
fn not_found() -> Response {
    (security_headers(), api_not_found()).into_response()
}

/// The API's error shape (`{"error","message"}`), as the API's own fallback answers.
fn api_not_found() -> Response {
    crate::http::error::ApiError::not_found().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_not_the_app() {
        assert!(is_api_path("api"));
        assert!(is_api_path("api/nope"));
        assert!(is_api_path("ws/console"));
        assert!(is_api_path("healthz"));
        assert!(!is_api_path("apiary"));
        assert!(!is_api_path("courses"));
    }

    #[test]
    fn extensions() {
        assert!(has_extension("vendor/novnc/core/rfb.js"));
        assert!(!has_extension("desktop/123"));
        assert!(!has_extension("a.b/c"));
    }

    #[test]
    fn embeds_the_app_and_novnc() {
        assert!(App::get("index.html").is_some());
        assert!(App::get("app.js").is_some());
        assert!(App::get("i18n.js").is_some());
        assert!(NoVncCore::get("rfb.js").is_some());
        // core imports pako from ../vendor
        assert!(NoVncVendor::iter().any(|p| p.starts_with("pako/lib/zlib/")));
        // the serial console's terminal
        assert!(XTerm::get("lib/xterm.mjs").is_some());
        assert!(XTerm::get("css/xterm.css").is_some());
    }
}
