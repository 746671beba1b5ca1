//! Campus sign-in against a real CAS server: PyPI's `django-cas-server`
//! (installed by `scripts/test-venv.sh cas`; the project in tests/cas/),
//! started by the test on a loopback port with its own SQLite and a users
//! file. The test is the browser: it walks pvce's redirect, the CAS login
//! form (its CSRF token and login ticket), and back, every hop checked.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::common::{self, TestEnv, process::free_port, repo_root};
use crate::sso::{callback, json_of, location, me, no_redirects, set_cookie};
use pvce::auth::Role;

/// The CAS server process; killed when dropped.
pub struct CasServer {
    child: Child,
    /// `http://127.0.0.1:PORT/cas`
    pub url: String,
    users: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for CasServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CasServer {
    pub async fn start() -> CasServer {
        let python = common::process::test_venv("cas").join("python");
        let dir = tempfile::Builder::new()
            .prefix("test-cas-")
            .tempdir()
            .unwrap();
        let users = dir.path().join("users.json");
        std::fs::write(&users, "{}").unwrap();
        let port = free_port();
        let child = Command::new(python)
            .arg(repo_root().join("tests/cas/run.py"))
            .arg(port.to_string())
            // Any pvce test server on loopback is a service of this CAS.
            .arg(r"^http://127\.0\.0\.1:[0-9]+/api/auth/cas/")
            .env("PVCE_CAS_DB", dir.path().join("cas.sqlite"))
            .env("PVCE_CAS_USERS", &users)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = CasServer {
            child,
            url: format!("http://127.0.0.1:{port}/cas"),
            users,
            _dir: dir,
        };
        let login = format!("{}/login", s.url);
        common::wait_for(
            "the CAS server to answer",
            Duration::from_secs(60),
            || async {
                let r = reqwest::get(&login).await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        s
    }

    /// What the directory says from now on: `{user: {password, attributes}}`.
    pub fn set_users(&self, users: Value) {
        std::fs::write(&self.users, users.to_string()).unwrap();
    }

    /// The settings file of a server that signs in through this CAS.
    pub fn auth_file(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("auth.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[[provider]]
id = "cas"
kind = "cas"
label = "Campus CAS"
label_zh = "统一身份认证（CAS）"
server_url = "{}"
username_attribute = "uid"
allow_http = true

[rules]
default = "refuse"
[[rules.rule]]
attribute = "status"
value = "gone"
then = "disable"
[[rules.rule]]
attribute = "personCategory"
value = "01"
then = "teacher"
[[rules.rule]]
attribute = "personCategory"
value = "02"
then = "student"
"#,
                self.url
            ),
        )
        .unwrap();
        path
    }
}

/// A browser at the CAS server: keeps the CAS session cookie (the
/// ticket-granting cookie), follows no redirects.
pub struct CasBrowser {
    http: reqwest::Client,
}

/// `name="…" value="…"` of every input of a page (the CAS form's hidden
/// fields: CSRF token, login ticket, service).
fn inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let len = tag[start..].find('"')?;
                Some(tag[start..start + len].replace("&amp;", "&"))
            };
            Some((attr("name")?, attr("value").unwrap_or_default()))
        })
        .collect()
}

impl CasBrowser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Opens the CAS login address pvce sent the browser to; without a CAS
    /// session, fills its form as `user`. Returns where the CAS server
    /// sends the browser next (the service with a ticket).
    pub async fn log_in(&self, login_url: &str, user: &str, password: &str) -> String {
        let page = self.http.get(login_url).send().await.unwrap();
        if page.status().is_redirection() {
            // Already signed in at the CAS: straight back with a ticket.
            return location(&page);
        }
        assert_eq!(page.status(), StatusCode::OK, "CAS login page");
        let html = page.text().await.unwrap();
        let mut form: Vec<(String, String)> = inputs(&html)
            .into_iter()
            .filter(|(n, _)| !["username", "password", "warn"].contains(&n.as_str()))
            .collect();
        form.push(("username".into(), user.into()));
        form.push(("password".into(), password.into()));
        let r = self.http.post(login_url).form(&form).send().await.unwrap();
        assert!(
            r.status().is_redirection(),
            "CAS login of {user}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        location(&r)
    }

    /// Ends the CAS session (the CAS server then signs the user out of
    /// every service that asked for single sign-out).
    pub async fn log_out(&self, cas: &CasServer) {
        let r = self
            .http
            .get(format!("{}/logout", cas.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_redirection());
    }
}

/// The value of `key` in the query of `url`.
fn query_value(url: &str, key: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {key} in {url}"))
}

/// A provider's start refuses an open redirect (the return address must be
/// a path here) and names an unknown provider (`kind`: cas, oidc).
pub(crate) async fn refuses_bad_starts(env: &TestEnv, kind: &str, provider: &str) {
    let audited = || async {
        failed_sign_ins(env)
            .await
            .into_iter()
            .filter(|(_, d)| d.contains("bad_redirect"))
            .count()
    };
    let before = audited().await;
    let http = no_redirects();
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let got = json_of(
            http.get(env.url(&format!("/api/auth/{kind}/{provider}/start")))
                .query(&[("next", next)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_redirect");
    }
    assert_eq!(audited().await, before + 3, "each open redirect is audited");
    let got = json_of(
        http.get(env.url(&format!("/api/auth/{kind}/nope/start")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    common::assert_error(&got, StatusCode::NOT_FOUND, "unknown_provider");
}

/// A flow started at pvce: (the CAS login URL, the flow cookie).
async fn start(env: &TestEnv, next: &str) -> (String, String) {
    let r = no_redirects()
        .get(env.url("/api/auth/cas/cas/start"))
        .query(&[("next", next)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let flow = set_cookie(&r, "pvce_sso_flow").expect("flow cookie");
    (location(&r), flow)
}

/// A whole sign-in of `user` in `browser`: pvce's answer at the callback.
async fn sign_in(
    env: &TestEnv,
    browser: &CasBrowser,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let (login, flow) = start(env, "/#/courses").await;
    let back = browser.log_in(&login, user, password).await;
    callback(&back, &flow).await
}

fn people() -> Value {
    json!({
        "test-li": {"password": "pw-li", "attributes": {"uid": "test-li", "displayName": "Li Lei", "personCategory": "02"}},
        "test-wang": {"password": "pw-wang", "attributes": {"uid": "test-wang", "displayName": "Wang Fang", "personCategory": "01"}},
        "test-alum": {"password": "pw-alum", "attributes": {"uid": "test-alum", "personCategory": "09"}}
    })
}

pub(crate) async fn failed_sign_ins(env: &TestEnv) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT user_name, detail FROM audit_log WHERE action = 'sign_in' AND outcome = 'failed'",
    )
    .fetch_all(&env.server.state.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn cas_sign_in_rules_and_single_sign_out() {
    let cas = CasServer::start().await;
    cas.set_users(people());
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = cas.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let anon = common::Client::anonymous(&env.server.url());

    let (s, list) = anon.get("/api/auth/providers").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list,
        json!([{"id": "cas", "kind": "cas", "label": "Campus CAS", "label_zh": "统一身份认证（CAS）"}])
    );

    // pvce sends the browser to the CAS login with its service address.
    let (login, _) = start(&env, "/").await;
    let service = format!("{}/api/auth/cas/cas/callback?state=", env.server.url());
    let parsed = reqwest::Url::parse(&login).unwrap();
    assert_eq!(
        format!(
            "{}://{}{}",
            parsed.scheme(),
            parsed.authority(),
            parsed.path()
        ),
        format!("{}/login", cas.url)
    );
    let asked = query_value(&login, "service");
    assert!(asked.starts_with(&service), "{asked}");

    // First sign-in creates the account from the attributes; the category
    // code makes Li a student; back where the flow started.
    let li = CasBrowser::new();
    let r = sign_in(&env, &li, "test-li", "pw-li").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    assert_eq!(location(&r), "/#/courses");
    let first = set_cookie(&r, "pvce_session").expect("session cookie");
    let (s, body) = me(&env, &first).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["user"]["username"], "test-li");
    assert_eq!(body["user"]["display_name"], "Li Lei");
    assert_eq!(body["user"]["role"], "student");
    let li_id = body["user"]["id"].clone();

    // She becomes a TA: the rules are re-evaluated at the next sign-in,
    // which the CAS session answers without a form (single sign-on).
    let mut now = people();
    now["test-li"]["attributes"]["personCategory"] = json!("01");
    cas.set_users(now.clone());
    let r = sign_in(&env, &li, "test-li", "not-asked-again").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let second = set_cookie(&r, "pvce_session").expect("session cookie");
    let (_, body) = me(&env, &second).await;
    assert_eq!(body["user"]["role"], "teacher");
    assert_eq!(body["user"]["id"], li_id, "the same account");

    // No rule matches: refused, no account, an audit entry.
    let alum = CasBrowser::new();
    let got = json_of(sign_in(&env, &alum, "test-alum", "pw-alum").await).await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "sign_in_refused");
    assert!(
        pvce::users::find_with_hash(&env.server.state.pool, "test-alum")
            .await
            .unwrap()
            .is_none()
    );
    // A campus identity never takes over a local account of the same name.
    env.user("test-wang", Role::Student).await;
    let wang = CasBrowser::new();
    let got = json_of(sign_in(&env, &wang, "test-wang", "pw-wang").await).await;
    common::assert_error(&got, StatusCode::CONFLICT, "account_conflict");
    let failures = failed_sign_ins(&env).await;
    for (who, reason) in [
        ("test-alum", "refused_by_rules"),
        ("test-wang", "account_conflict"),
    ] {
        assert!(
            failures
                .iter()
                .any(|(w, d)| w == who && d.contains("\"cas\"") && d.contains(reason)),
            "{failures:?}"
        );
    }

    // Signing out of pvce sends the browser on to the CAS logout.
    let http = no_redirects();
    let got = json_of(
        http.post(env.url("/api/auth/logout"))
            .header(COOKIE, format!("pvce_session={second}"))
            .header("Origin", env.server.url())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let to = got.1["redirect"].as_str().unwrap_or_default();
    assert!(
        to.starts_with(&format!("{}/logout?service=", cas.url)),
        "{to}"
    );
    assert_eq!(me(&env, &second).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(&env, &first).await.0,
        StatusCode::OK,
        "only that session"
    );

    // Single sign-out: Li signs out at the CAS (say, in another service);
    // the CAS server posts a LogoutRequest and her other pvce session ends.
    li.log_out(&cas).await;
    common::wait_for(
        "the CAS single sign-out to end the session",
        Duration::from_secs(30),
        || async { (me(&env, &first).await.0 == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    let signed_out: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'sign_out' AND detail LIKE '%single_sign_out%'",
    )
    .fetch_one(&env.server.state.pool)
    .await
    .unwrap();
    assert!(signed_out >= 1);

    // The directory disables Li: refused at the next sign-in.
    now["test-li"]["attributes"]["status"] = json!("gone");
    cas.set_users(now);
    let got = json_of(sign_in(&env, &li, "test-li", "pw-li").await).await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "account_disabled");
}

#[tokio::test]
async fn cas_refuses_replayed_foreign_and_redirected_tickets() {
    let cas = CasServer::start().await;
    cas.set_users(people());
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = cas.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let http = no_redirects();
    let browser = CasBrowser::new();

    refuses_bad_starts(&env, "cas", "cas").await;

    // A callback this browser did not start (login CSRF), or no cookie.
    let (login, flow) = start(&env, "/").await;
    let back = browser.log_in(&login, "test-li", "pw-li").await;
    assert!(back.contains("ticket=ST-"), "{back}");
    let got = json_of(callback(&back, "someone-elses-flow").await).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");
    let got = json_of(http.get(&back).send().await.unwrap()).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");
    let states = failed_sign_ins(&env)
        .await
        .into_iter()
        .filter(|(w, d)| w == "-" && d.contains("\"cas\"") && d.contains("bad_state"))
        .count();
    assert_eq!(states, 2, "each refused callback is audited");

    // The real browser finishes; the same callback again is a replay.
    let r = callback(&back, &flow).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&r, "pvce_session").expect("session cookie");
    let got = json_of(callback(&back, &flow).await).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");

    // The used ticket inside a fresh flow: the CAS server refuses it.
    let ticket = query_value(&back, "ticket");
    let (_, flow2) = start(&env, "/").await;
    let replay = reqwest::Url::parse_with_params(
        &env.url("/api/auth/cas/cas/callback"),
        [("state", flow2.as_str()), ("ticket", ticket.as_str())],
    )
    .unwrap();
    let got = json_of(callback(replay.as_str(), &flow2).await).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");

    // A ticket the CAS issued for another service (another site on the
    // same CAS), brought here with a real flow: INVALID_SERVICE.
    let (_, flow3) = start(&env, "/").await;
    let other_site = format!("http://127.0.0.1:1/api/auth/cas/cas/callback?state={flow3}");
    let other_login =
        reqwest::Url::parse_with_params(&format!("{}/login", cas.url), [("service", &other_site)])
            .unwrap();
    let to_other = browser
        .log_in(other_login.as_str(), "test-li", "pw-li")
        .await;
    assert!(to_other.starts_with(&other_site), "{to_other}");
    let foreign_ticket = query_value(&to_other, "ticket");
    let foreign = reqwest::Url::parse_with_params(
        &env.url("/api/auth/cas/cas/callback"),
        [
            ("state", flow3.as_str()),
            ("ticket", foreign_ticket.as_str()),
        ],
    )
    .unwrap();
    let got = json_of(callback(foreign.as_str(), &flow3).await).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap_or("")
            .contains("INVALID_SERVICE"),
        "{}",
        got.1
    );
    // No ticket at all.
    let (_, flow4) = start(&env, "/").await;
    let bare = format!("{}?state={flow4}", env.url("/api/auth/cas/cas/callback"));
    let got = json_of(callback(&bare, &flow4).await).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");
    let failures = failed_sign_ins(&env).await;
    assert!(
        failures
            .iter()
            .filter(|(w, d)| w == "-" && d.contains("\"cas\"") && d.contains("provider_refused"))
            .count()
            >= 2,
        "{failures:?}"
    );

    // Single sign-out requests: garbage is refused; one naming a ticket no
    // session was opened with ends nothing.
    for bad in [
        "",
        "not xml",
        "<Other><SessionIndex>ST-1</SessionIndex></Other>",
    ] {
        let got = json_of(
            http.post(env.url("/api/auth/cas/cas/callback"))
                .form(&[("logoutRequest", bad)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");
    }
    let got = json_of(
        http.post(env.url("/api/auth/cas/cas/callback"))
            .body("nothing=here")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap(),
    )
    .await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let r = http
        .post(env.url("/api/auth/cas/cas/callback"))
        .form(&[(
            "logoutRequest",
            "<samlp:LogoutRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'><samlp:SessionIndex>ST-not-ours</samlp:SessionIndex></samlp:LogoutRequest>",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&env, &session).await.0, StatusCode::OK);
    // The ticket that opened the session ends it (what the CAS server sends).
    let r = http
        .post(env.url("/api/auth/cas/cas/callback"))
        .form(&[(
            "logoutRequest",
            format!("<samlp:LogoutRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'><samlp:SessionIndex>{ticket}</samlp:SessionIndex></samlp:LogoutRequest>"),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&env, &session).await.0, StatusCode::UNAUTHORIZED);
}
