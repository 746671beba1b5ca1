//! Black-box tests of the HTTP layer's contract: the Origin rule on every
//! state-changing operation of `openapi.json` (cross-site request forgery),
//! JSON error bodies for everything the framework refuses itself (413, 414,
//! 431, 404, 405, rejections), the `/metrics` token and listener, and the
//! embedded UI's files with their headers.

use crate::common::{self, TestEnv, assert_error};
use pvce::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const EVIL: &str = "http://evil.example";
const CSV_HEADER: &str = "username,display_name,role,password\n";

/// Sends one request built by hand; the body parsed as JSON (Null if empty;
/// a panic if an error body is not JSON).
async fn send(
    method: &Method,
    url: &str,
    body: (&'static str, impl Into<reqwest::Body>),
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method.clone(), url)
        .header("content-type", body.0)
        .body(body.1);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let res = r.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
    };
    (status, v)
}

/// Logs in and returns the `name=value` of the session cookie it sets.
async fn session_cookie(env: &TestEnv, username: &str) -> String {
    let res = reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .json(&json!({"username": username, "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().trim().to_owned()
}

/// Every operation of the OpenAPI document that is not GET/HEAD/OPTIONS:
/// method, path template and the request body's media type.
fn unsafe_operations(doc: &Value) -> Vec<(Method, String, &'static str)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let method = match m.as_str() {
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let content = op["requestBody"]["content"].as_object();
            let media = match content.and_then(|c| c.keys().next()).map(String::as_str) {
                Some("text/csv" | "text/plain") => "text/csv",
                Some("application/octet-stream" | "application/x-tar") => {
                    "application/octet-stream"
                }
                _ => "application/json",
            };
            ops.push((method, path.clone(), media));
        }
    }
    ops
}

/// A body of `media` that changes nothing when a handler does run.
fn harmless_body(media: &'static str) -> (&'static str, String) {
    match media {
        "text/csv" => (media, CSV_HEADER.to_owned()),
        "application/json" => (media, "{}".to_owned()),
        _ => (media, String::new()),
    }
}

fn qemu_img(args: &[&str]) {
    crate::common::tool::run_tool(std::process::Command::new("qemu-img").args(args));
}

#[tokio::test]
async fn cookie_requests_from_a_foreign_origin_change_nothing() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    let student = env.user("test-student", Role::Student).await;
    let admin = env.client("test-admin").await;
    let base = env.server.url();

    // Real objects for every path parameter: a template, a course with the
    // student's VM, a snapshot of it, the local node.
    let image = env.dir.path().join("test-blank.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        image.to_str().unwrap(),
        "64M",
    ]);
    let (s, tpl) = admin
        .upload(
            "/api/templates/import?name=test-csrf&format=qcow2&os=test-os",
            &image,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let (s, course) = admin
        .post(
            "/api/courses",
            json!({"code":"test-csrf","name":"C","vm_specs":[
                {"name":"vm","template_id":tpl["id"],"vcpus":1,"memory_mib":128}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let cid = course["id"].as_str().unwrap().to_owned();
    let (s, _) = admin
        .post(
            &format!("/api/courses/{cid}/students"),
            json!({"usernames":["test-student"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, vms) = admin.get(&format!("/api/vms?course_id={cid}")).await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    let (s, snap) = admin
        .post(
            &format!("/api/vms/{vm_id}/snapshots"),
            json!({"name":"test-before"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    let (_, nodes) = admin.get("/api/nodes").await;
    let ids = [
        ("/api/vms/{id}", vm_id.clone()),
        ("/api/courses/{id}", cid.clone()),
        (
            "/api/users/{id}",
            student["id"].as_str().unwrap().to_owned(),
        ),
        (
            "/api/nodes/{id}",
            nodes[0]["id"].as_str().unwrap().to_owned(),
        ),
        (
            "/api/templates/{id}",
            tpl["id"].as_str().unwrap().to_owned(),
        ),
    ];
    let real_path = |template: &str| {
        let mut p = template.to_owned();
        for (prefix, id) in &ids {
            if template.starts_with(prefix) {
                p = p.replacen("{id}", id, 1);
            }
        }
        p.replace("{sid}", snap["id"].as_str().unwrap())
            .replace("{user_id}", student["id"].as_str().unwrap())
    };
    let fake_path = |template: &str| {
        template
            .replace("{id}", "00000000-0000-4000-8000-000000000001")
            .replace("{sid}", "00000000-0000-4000-8000-000000000002")
            .replace("{user_id}", "00000000-0000-4000-8000-000000000003")
    };

    let (_, doc) = admin.get("/api/openapi.json").await;
    let ops = unsafe_operations(&doc);
    assert!(ops.len() > 30, "{} operations", ops.len());
    assert!(
        ops.iter()
            .any(|(m, p, _)| m == Method::POST && p == "/api/vms/{id}/reset")
    );
    let cookie = session_cookie(&env, "test-admin").await;
    let csv = format!("{CSV_HEADER}test-evil,Evil,admin,evil-pass-123\n");

    // A foreign Origin, and no Origin at all: 403 bad_origin on every
    // operation, with the real objects and the dangerous bodies.
    for origin in [Some(EVIL), Some("null"), None] {
        for (method, path, media) in &ops {
            if path == "/api/auth/login" {
                continue; // no session involved; checked below
            }
            let body = if *media == "text/csv" {
                (*media, csv.clone())
            } else {
                harmless_body(media)
            };
            let mut headers = vec![("cookie", cookie.as_str())];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            let got = send(
                method,
                &format!("{base}{}", real_path(path)),
                body,
                &headers,
            )
            .await;
            assert_error(&got, StatusCode::FORBIDDEN, "bad_origin");
        }
    }
    // A browser's cross-site fetch: Sec-Fetch-Site says so, no Origin.
    let got = send(
        &Method::POST,
        &format!("{base}/api/vms/{vm_id}/reset"),
        ("text/plain", String::new()),
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_error(&got, StatusCode::FORBIDDEN, "bad_origin");

    // Nothing happened: no user created, the VM's layer not reset (its
    // snapshot is still there), the objects all still exist.
    let (_, users) = admin.get("/api/users").await;
    assert!(
        !common::strings(&users, "username").contains(&"test-evil"),
        "{users}"
    );
    let (_, snaps) = admin.get(&format!("/api/vms/{vm_id}/snapshots")).await;
    assert_eq!(common::strings(&snaps, "name"), ["test-before"], "{snaps}");
    let (s, c) = admin.get(&format!("/api/courses/{cid}")).await;
    assert_eq!((s, c["student_count"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(
        admin
            .get(&format!("/api/templates/{}", tpl["id"].as_str().unwrap()))
            .await
            .0,
        StatusCode::OK
    );
    let (_, nodes_after) = admin.get("/api/nodes").await;
    assert_eq!(nodes_after.as_array().unwrap().len(), 1);
    // The session is still valid (logout was refused too).
    let got = send(
        &Method::GET,
        &format!("{base}/api/me"),
        ("text/plain", String::new()),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(got.0, StatusCode::OK);

    // The server's own Origin, `Sec-Fetch-Site: same-origin`, and a bearer
    // token without any Origin all pass the rule (harmless bodies, unknown
    // ids: handlers answer what they answer, never bad_origin).
    let own = base.clone();
    let bearer = format!("Bearer {}", admin.token);
    let passing: [Vec<(&str, &str)>; 3] = [
        vec![("cookie", &cookie), ("origin", &own)],
        vec![("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        vec![("authorization", &bearer), ("cookie", &cookie)],
    ];
    for headers in &passing {
        for (method, path, media) in &ops {
            if path == "/api/auth/logout" {
                continue; // would end the session the next requests use
            }
            let got = send(
                method,
                &format!("{base}{}", fake_path(path)),
                harmless_body(media),
                headers,
            )
            .await;
            assert_ne!(
                got.1["error"], "bad_origin",
                "{method} {path} {headers:?}: {}",
                got.1
            );
        }
    }
    // And they take effect: the import and the reset the foreign page could not do.
    let got = send(
        &Method::POST,
        &format!("{base}/api/users/import"),
        ("text/plain", csv.clone()),
        &[("cookie", &cookie), ("origin", &own)],
    )
    .await;
    assert_eq!(got.1["created"], json!(["test-evil"]), "{}", got.1);
    let got = send(
        &Method::POST,
        &format!("{base}/api/vms/{vm_id}/reset"),
        ("text/plain", String::new()),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let (_, snaps) = admin.get(&format!("/api/vms/{vm_id}/snapshots")).await;
    assert_eq!(snaps, json!([]));

    // Login CSRF: a foreign page may not sign the browser in; tools (no
    // Origin) and the UI (own Origin) may.
    let login = json!({"username":"test-admin","password":common::PASSWORD}).to_string();
    let got = send(
        &Method::POST,
        &format!("{base}/api/auth/login"),
        ("application/json", login.clone()),
        &[("origin", EVIL)],
    )
    .await;
    assert_error(&got, StatusCode::FORBIDDEN, "bad_origin");
    for headers in [vec![], vec![("origin", own.as_str())]] {
        let got = send(
            &Method::POST,
            &format!("{base}/api/auth/login"),
            ("application/json", login.clone()),
            &headers,
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    }

    // Logout from the UI works.
    let got = send(
        &Method::POST,
        &format!("{base}/api/auth/logout"),
        ("text/plain", String::new()),
        &[("cookie", &cookie), ("origin", &own)],
    )
    .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
}

#[tokio::test]
async fn allowed_origins_and_the_public_url_count_as_own() {
    let env = TestEnv::start_with(|c| {
        c.allowed_origins = vec!["http://ui.example".into()];
        c.public_url = Some("https://lab.example.edu".into());
    })
    .await;
    env.user("test-admin", Role::Admin).await;
    let cookie = session_cookie(&env, "test-admin").await;
    let url = env.url("/api/users/import");
    let body = || ("text/csv", CSV_HEADER.to_owned());
    for origin in ["http://ui.example", "https://lab.example.edu"] {
        let got = send(
            &Method::POST,
            &url,
            body(),
            &[("cookie", &cookie), ("origin", origin)],
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{origin}: {}", got.1);
    }
    // With a public URL, the Host header no longer names the server's origin.
    let got = send(
        &Method::POST,
        &url,
        body(),
        &[("cookie", &cookie), ("origin", &env.server.url())],
    )
    .await;
    assert_error(&got, StatusCode::FORBIDDEN, "bad_origin");
}

/// Writes `head` on a fresh connection and reads the whole answer (the
/// server closes after refusing a head), writing and reading at once: the
/// server may answer before it has read everything.
async fn raw_exchange(env: &TestEnv, head: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let (mut rx, mut tx) = tcp.into_split();
    let head = head.to_vec();
    let writer = tokio::spawn(async move {
        let _ = tx.write_all(&head).await;
        tx
    });
    let mut out = Vec::new();
    let read = rx.read_to_end(&mut out);
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the server answers and closes")
        .ok();
    drop(writer.await);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (status_head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    assert!(
        status_head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{status_head}"
    );
    let status = status_head[9..12].parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}")),
    )
}

fn assert_raw(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn every_error_the_framework_gives_is_a_json_error() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let bearer = format!("Bearer {}", admin.token);
    let auth = [("authorization", bearer.as_str())];

    // CSV import: over the body limit, and not UTF-8.
    let url = env.url("/api/users/import");
    let big = format!("{CSV_HEADER}{}", "x".repeat(3 * 1024 * 1024));
    assert_error(
        &send(&Method::POST, &url, ("text/csv", big), &auth).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert_error(
        &send(
            &Method::POST,
            &url,
            ("text/csv", vec![0xff, 0xfe, b'\n']),
            &auth,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // Request targets and header fields over our limits (the router answers)
    // and over hyper's own (URI > 64 KiB, a head > 1 MiB, > 1000 fields).
    for len in [10_000, 70_000] {
        let head = format!(
            "GET /api/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "a".repeat(len)
        );
        assert_raw(
            raw_exchange(&env, head.as_bytes()).await,
            414,
            "uri_too_long",
        );
    }
    for value_len in [40_000, 2_000_000] {
        let head = format!(
            "GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(value_len)
        );
        assert_raw(
            raw_exchange(&env, head.as_bytes()).await,
            431,
            "headers_too_large",
        );
    }
    for count in [150, 1500] {
        let fields: String = (0..count).map(|i| format!("X-H{i}: 1\r\n")).collect();
        let head = format!("GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fields}\r\n");
        assert_raw(
            raw_exchange(&env, head.as_bytes()).await,
            431,
            "headers_too_large",
        );
    }
    // Not HTTP at all.
    assert_raw(
        raw_exchange(&env, b"GARBAGE\r\n\r\n").await,
        400,
        "bad_request",
    );

    // Unknown static files (the UI's and noVNC's), unknown API paths.
    let anon = common::Client::anonymous(&env.server.url());
    for path in [
        "/nope.js",
        "/vendor/novnc/core/nope.js",
        "/vendor/uplot/nope.css",
        "/api/nope",
    ] {
        assert_error(&anon.get(path).await, StatusCode::NOT_FOUND, "not_found");
    }
    // Wrong method.
    assert_error(
        &admin.send(Method::PUT, "/api/users", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &admin.send(Method::DELETE, "/api/auth/login", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Bad query strings, bad path parameters.
    assert_error(
        &admin.get("/api/events?limit=lots").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &admin.get("/api/nodes/metrics?minutes=-5").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &admin.get("/api/vms/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &admin.get("/api/vms?course_id=not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    // A JSON body without its content type, or of another type.
    let got = send(
        &Method::POST,
        &env.url("/api/users"),
        ("text/plain", "{}"),
        &auth,
    )
    .await;
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let res = reqwest::Client::new()
        .post(env.url("/api/courses"))
        .header("authorization", &bearer)
        .body("{}")
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json::<Value>().await.unwrap());
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // The console endpoint without a WebSocket upgrade.
    assert_error(
        &anon.get("/ws/console?token=x").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let env = TestEnv::start_with(|c| {
        c.metrics_token = Some("test-scrape-token".parse().unwrap());
    })
    .await;
    let url = env.url("/metrics");
    let none = reqwest::get(&url).await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    for wrong in [
        "Bearer test-scrape-toke",
        "Bearer test-scrape-token2",
        "Basic test-scrape-token",
    ] {
        let res = reqwest::Client::new()
            .get(&url)
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // A user's session token is not the metrics token.
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    assert_error(
        &admin.get("/metrics").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let res = reqwest::Client::new()
        .get(&url)
        .header("authorization", "Bearer test-scrape-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("pvce_node_up{node=\"local\"} 1")
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address_only() {
    let env = TestEnv::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    let addr = env.server.metrics_addr.expect("a metrics address");
    assert_ne!(addr, env.server.addr);
    // Not on the main listener any more…
    let anon = common::Client::anonymous(&env.server.url());
    assert_error(
        &anon.get("/metrics").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // …but on its own, which serves nothing else.
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::OK);
    assert!(
        text.text()
            .await
            .unwrap()
            .contains("pvce_vms{state=\"running\"}")
    );
    let metrics_only = common::Client::anonymous(&format!("http://{addr}"));
    for path in ["/api/me", "/healthz", "/"] {
        assert_error(
            &metrics_only.get(path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
}

/// The embedded UI as plain HTTP: content types, security headers, caching,
/// the SPA fallback, and that unknown API paths stay JSON 404s.
#[tokio::test]
async fn ui_files_are_served_with_strict_headers() {
    let env = TestEnv::start().await;
    // The real server's router, as a browser reaches it.
    let base = env.server.url();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };

    for (path, ctype) in [
        ("/", "text/html"),
        ("/some/deep/route", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
        ("/vendor/novnc/core/rfb.js", "text/javascript"),
        (
            "/vendor/novnc/vendor/pako/lib/zlib/inflate.js",
            "text/javascript",
        ),
        ("/vendor/uplot/uPlot.esm.js", "text/javascript"),
        ("/vendor/uplot/uPlot.min.css", "text/css"),
    ] {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(
            header(&res, "content-type").starts_with(ctype),
            "{path}: {}",
            header(&res, "content-type")
        );
        let csp = header(&res, "content-security-policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
        // Revalidation by ETag.
        let etag = header(&res, "etag");
        assert!(!etag.is_empty(), "{path}");
        let again = http
            .get(format!("{base}{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let index = get("/").await.unwrap().text().await.unwrap();
    assert!(index.contains(r#"<script type="module" src="/app.js">"#));

    // Missing files are 404s (a broken import must fail visibly), and nothing
    // outside the embedded folders is reachable.
    for path in [
        "/missing.js",
        "/vendor/novnc/core/nope.js",
        "/vendor/novnc/package.json",
        "/vendor/novnc/core/%2e%2e/package.json",
        "/vendor/novnc/core/..%2f..%2fpackage.json",
        "/node_modules/@novnc/novnc/core/rfb.js",
        "/vendor/uplot/uPlot.cjs.js",
        "/vendor/uplot/../package.json",
        "/package.json",
    ] {
        assert_eq!(
            get(path).await.unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }

    // Unknown API paths keep the API's JSON errors, whatever the method.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let res = http
            .request(method.clone(), format!("{base}/api/no-such-thing"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{method}: {body}");
    }
    let res = http
        .post(format!("{base}/some/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
