//! Campus sign-in against a real OpenID Connect provider: PyPI's
//! `oidc-provider-mock` (installed by `scripts/test-venv.sh oidc` into a venv
//! under target/), started by the test on a loopback port. The test walks the
//! code flow as a browser would (start → the provider's form → callback),
//! with redirects followed by hand so every hop is checked.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::common::{self, TestEnv, process::free_port};
use pvce::auth::Role;

/// The provider process; killed when dropped.
pub struct Provider {
    child: Child,
    pub url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    pub async fn start() -> Provider {
        let exe = common::process::test_venv("oidc").join("oidc-provider-mock");
        let port = free_port();
        let child = Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Provider {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let discovery = format!("{}/.well-known/openid-configuration", p.url);
        common::wait_for(
            "the OIDC provider to answer",
            Duration::from_secs(30),
            || async {
                let r = reqwest::get(&discovery).await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        p
    }

    /// What the directory says about `sub` from now on.
    pub async fn set_user(&self, sub: &str, claims: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/users/{sub}", self.url))
            .json(&claims)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT user {sub}: {}", r.status());
    }

    /// The settings file of a server that signs in through this provider.
    pub fn auth_file(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("auth.toml");
        std::fs::write(dir.join("oidc-secret"), "test-client-secret\n").unwrap();
        std::fs::write(
            &path,
            format!(
                r#"
[[provider]]
id = "campus"
kind = "oidc"
label = "Campus account"
label_zh = "统一身份认证"
issuer = "{}"
client_id = "pvce-test"
client_secret_file = "oidc-secret"
scopes = ["profile", "email"]
allow_http = true

[rules]
default = "refuse"
[[rules.rule]]
attribute = "status"
value = "gone"
then = "disable"
[[rules.rule]]
attribute = "groups"
value = "lab-admins"
then = "admin"
[[rules.rule]]
attribute = "eduPersonAffiliation"
value = "faculty"
then = "teacher"
[[rules.rule]]
attribute = "eduPersonAffiliation"
value = "student"
then = "student"
"#,
                self.url
            ),
        )
        .unwrap();
        path
    }
}

pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (n, value) = pair.split_once('=')?;
        (n == name && !value.is_empty()).then(|| value.to_owned())
    })
}

pub(crate) async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A flow started at pvce: (the provider's authorization URL, the flow cookie).
async fn start(env: &TestEnv, next: &str) -> (String, String) {
    let r = no_redirects()
        .get(env.url("/api/auth/oidc/campus/start"))
        .query(&[("next", next)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let flow = set_cookie(&r, "pvce_sso_flow").expect("flow cookie");
    (location(&r), flow)
}

/// The person `sub` approves at the provider: the callback URL it sends the browser to.
async fn approve(authorize: &str, sub: &str) -> String {
    let r = no_redirects()
        .post(authorize)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "provider form: {}", r.status());
    location(&r)
}

/// The browser arrives at the callback with its flow cookie.
pub(crate) async fn callback(url: &str, flow: &str) -> reqwest::Response {
    no_redirects()
        .get(url)
        .header(COOKIE, format!("pvce_sso_flow={flow}"))
        .send()
        .await
        .unwrap()
}

/// A whole sign-in of `sub`: the answer of pvce's callback.
async fn sign_in(env: &TestEnv, sub: &str) -> reqwest::Response {
    let (authorize, flow) = start(env, "/#/courses").await;
    let back = approve(&authorize, sub).await;
    callback(&back, &flow).await
}

pub(crate) async fn me(env: &TestEnv, session: &str) -> (StatusCode, Value) {
    json_of(
        reqwest::Client::new()
            .get(env.url("/api/me"))
            .header(COOKIE, format!("pvce_session={session}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn oidc_sign_in_rules_and_refusals() {
    let op = Provider::start().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = op.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let anon = common::Client::anonymous(&env.server.url());

    // The login page's list: public fields only.
    let (s, list) = anon.get("/api/auth/providers").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list,
        json!([{"id": "campus", "kind": "oidc", "label": "Campus account", "label_zh": "统一身份认证"}])
    );

    // First sign-in creates the account; the rules make a faculty member a
    // teacher; the browser goes back where it started.
    op.set_user(
        "u-alice",
        json!({"preferred_username": "test-alice", "name": "Alice Liu", "eduPersonAffiliation": ["member", "faculty"]}),
    )
    .await;
    let r = sign_in(&env, "u-alice").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    assert_eq!(location(&r), "/#/courses");
    let first = set_cookie(&r, "pvce_session").expect("session cookie");
    let (s, body) = me(&env, &first).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["user"]["username"], "test-alice");
    assert_eq!(body["user"]["display_name"], "Alice Liu");
    assert_eq!(body["user"]["role"], "teacher");
    let alice_id = body["user"]["id"].clone();

    // Re-evaluated at the next sign-in: now in the admins' group.
    op.set_user(
        "u-alice",
        json!({"preferred_username": "test-alice", "eduPersonAffiliation": ["faculty"], "groups": ["lab-admins"]}),
    )
    .await;
    let r = sign_in(&env, "u-alice").await;
    let second = set_cookie(&r, "pvce_session").expect("session cookie");
    let (_, body) = me(&env, &second).await;
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(
        body["user"]["id"], alice_id,
        "the same account, not a new one"
    );

    // The account has no password: the local form never opens it.
    let (s, _) = anon
        .post(
            "/api/auth/login",
            json!({"username": "test-alice", "password": "!external"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // No rule matches and the default is "refuse": no account is made.
    op.set_user(
        "u-bob",
        json!({"preferred_username": "test-bob", "eduPersonAffiliation": ["alum"]}),
    )
    .await;
    let got = json_of(sign_in(&env, "u-bob").await).await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "sign_in_refused");
    assert!(
        pvce::users::find_with_hash(&env.server.state.pool, "test-bob")
            .await
            .unwrap()
            .is_none()
    );

    // A campus identity never takes over a local account of the same name.
    env.user("test-carol", Role::Student).await;
    op.set_user(
        "u-carol",
        json!({"preferred_username": "test-carol", "eduPersonAffiliation": ["student"]}),
    )
    .await;
    let got = json_of(sign_in(&env, "u-carol").await).await;
    common::assert_error(&got, StatusCode::CONFLICT, "account_conflict");

    // The directory disables Alice: refused, and her open sessions end.
    op.set_user(
        "u-alice",
        json!({"preferred_username": "test-alice", "status": "gone", "groups": ["lab-admins"]}),
    )
    .await;
    let got = json_of(sign_in(&env, "u-alice").await).await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "account_disabled");
    for session in [&first, &second] {
        assert_eq!(me(&env, session).await.0, StatusCode::UNAUTHORIZED);
    }
    // Back in the directory: a pvce account that was disabled stays so
    // until an admin says otherwise.
    op.set_user(
        "u-alice",
        json!({"preferred_username": "test-alice", "eduPersonAffiliation": ["faculty"]}),
    )
    .await;
    let got = json_of(sign_in(&env, "u-alice").await).await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "account_disabled");
}

#[tokio::test]
async fn oidc_refuses_forged_replayed_and_redirected_flows() {
    let op = Provider::start().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = op.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    op.set_user(
        "u-dan",
        json!({"preferred_username": "test-dan", "eduPersonAffiliation": ["student"]}),
    )
    .await;
    let http = no_redirects();

    // Open redirect: the return address must be a path here.
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let got = json_of(
            http.get(env.url("/api/auth/oidc/campus/start"))
                .query(&[("next", next)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_redirect");
    }
    let got = json_of(
        http.get(env.url("/api/auth/oidc/nope/start"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    common::assert_error(&got, StatusCode::NOT_FOUND, "unknown_provider");

    // Wrong state: a callback this browser did not start (login CSRF).
    let (authorize, flow) = start(&env, "/").await;
    let back = approve(&authorize, "u-dan").await;
    let got = json_of(callback(&back, "someone-elses-flow").await).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");
    // No cookie at all.
    let got = json_of(http.get(&back).send().await.unwrap()).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");

    // The real browser finishes; the same callback again is a replay.
    let r = callback(&back, &flow).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "pvce_session").is_some());
    let got = json_of(callback(&back, &flow).await).await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");

    // The used code inside a fresh flow: the provider refuses it.
    let code = back
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let (_, flow2) = start(&env, "/").await;
    let replay = format!(
        "{}?code={code}&state={flow2}",
        env.url("/api/auth/oidc/campus/callback")
    );
    let got = json_of(callback(&replay, &flow2).await).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");

    // Wrong nonce: a code issued for flow A (its nonce in the ID token)
    // redeemed in flow B.
    let (authorize_a, _flow_a) = start(&env, "/").await;
    let back_a = approve(&authorize_a, "u-dan").await;
    let code_a = back_a
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let (_, flow_b) = start(&env, "/").await;
    let mixed = format!(
        "{}?code={code_a}&state={flow_b}",
        env.url("/api/auth/oidc/campus/callback")
    );
    let got = json_of(callback(&mixed, &flow_b).await).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "bad_id_token");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("nonce"),
        "{}",
        got.1
    );

    // Signing out of a campus session also sends the browser to the
    // provider's logout, and ends pvce's session.
    let r = sign_in(&env, "u-dan").await;
    let session = set_cookie(&r, "pvce_session").expect("session cookie");
    let got = json_of(
        http.post(env.url("/api/auth/logout"))
            .header(COOKIE, format!("pvce_session={session}"))
            .header("Origin", env.server.url())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let to = got.1["redirect"].as_str().unwrap_or_default();
    assert!(
        to.starts_with(&format!("{}/oauth2/end_session?", op.url)),
        "{to}"
    );
    assert!(to.contains("client_id=pvce-test"), "{to}");
    assert_eq!(me(&env, &session).await.0, StatusCode::UNAUTHORIZED);

    // The person said no at the provider.
    let (authorize, flow) = start(&env, "/").await;
    let r = http
        .post(&authorize)
        .form(&[("action", "deny")])
        .send()
        .await
        .unwrap();
    let denied = location(&r);
    let got = json_of(callback(&denied, &flow).await).await;
    // This provider's refusal carries no `state` back: an answer that
    // cannot be tied to a flow is refused as such.
    if denied.contains("state=") {
        common::assert_error(&got, StatusCode::UNAUTHORIZED, "provider_refused");
    } else {
        common::assert_error(&got, StatusCode::BAD_REQUEST, "bad_state");
    }
    assert!(denied.contains("error=access_denied"), "{denied}");
}
