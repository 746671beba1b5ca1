//! Campus sign-in against a real OpenID Connect provider: PyPI's
//! `oidc-provider-mock` (installed by `scripts/test-venv.sh oidc` into a venv
//! under target/), started by the test on a loopback port. The test walks the
//! code flow as a browser would (start → the provider's form → callback),
//! with redirects followed by hand so every hop is checked.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKey, JsonWebKeyId, PrivateSigningKey};

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
        auth_file(&self.url, dir)
    }
}

/// The settings file of a server whose campus provider is at `issuer`.
fn auth_file(issuer: &str, dir: &std::path::Path) -> PathBuf {
    {
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
                issuer
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

    // Open redirect: the return address must be a path here; an unknown provider.
    crate::cas::refuses_bad_starts(&env, "oidc", "campus").await;

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

// ---------------------------------------------------------------------------
// A party in the path between pvce and the provider (an attacker, or a
// provider rotating its keys): a reverse proxy that pvce takes for the
// provider. It forwards the browser's Host, so the provider names the proxy
// as issuer and in every endpoint of its discovery document, and the `iss`
// of its ID tokens is the proxy's URL too: all of pvce's traffic goes
// through it, and pvce's real verification code judges what it changes.
// ---------------------------------------------------------------------------

/// What the proxy does to the ID token in the token endpoint's answer.
#[derive(Clone, Default)]
enum Tamper {
    #[default]
    Pass,
    /// Flips bits of the signature (everything else untouched).
    FlipSignature,
    /// Re-signs the provider's token with `key` after merging `claims`
    /// into its payload.
    Resign {
        key: Arc<CoreRsaPrivateSigningKey>,
        claims: Value,
    },
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    tamper: Mutex<Tamper>,
    /// When set, the key set served at the provider's `jwks_uri` instead
    /// of the provider's own.
    published: Mutex<Option<Value>>,
    /// How often the key set was fetched (pvce's refetches).
    jwks_fetches: AtomicUsize,
}

struct Proxy {
    url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: no_redirects(),
            tamper: Mutex::new(Tamper::Pass),
            published: Mutex::new(None),
            jwks_fetches: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Proxy { url, state, task }
    }

    fn tamper(&self, t: Tamper) {
        *self.state.tamper.lock().unwrap() = t;
    }

    /// Serve these keys (public halves) as the provider's key set.
    fn publish(&self, keys: &[&CoreRsaPrivateSigningKey]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::to_value(k.as_verification_key()).unwrap())
            .collect();
        *self.state.published.lock().unwrap() = Some(json!({ "keys": keys }));
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn forward(
    axum::extract::State(st): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path().to_owned();
    if path == "/jwks" {
        st.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        let published = st.published.lock().unwrap().clone();
        if let Some(keys) = published {
            return axum::Json(keys).into_response();
        }
    }
    let target = format!(
        "{}{}",
        st.upstream,
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut out = st.http.request(parts.method, &target);
    for (name, value) in &parts.headers {
        // The Host stays the proxy's: the provider derives its issuer and
        // endpoints from it.
        if name != "content-length" && name != "connection" && name != "transfer-encoding" {
            out = out.header(name, value);
        }
    }
    let answer = out.body(body).send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if path == "/oauth2/token" && status.is_success() {
        let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(token) = doc["id_token"].as_str() {
            let tamper = st.tamper.lock().unwrap().clone();
            doc["id_token"] = Value::String(tamper_with(token, &tamper));
        }
        bytes = serde_json::to_vec(&doc).unwrap();
    }
    let mut r = (status, bytes).into_response();
    // The provider's own Content-Type, not the default of raw bytes.
    r.headers_mut().remove("content-type");
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            r.headers_mut().append(name, value.clone());
        }
    }
    r
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn tamper_with(token: &str, how: &Tamper) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a signed JWT: {token}");
    match how {
        Tamper::Pass => token.to_owned(),
        Tamper::FlipSignature => {
            let mut sig = unb64(parts[2]);
            sig[10] ^= 0xff;
            format!("{}.{}.{}", parts[0], parts[1], b64(&sig))
        }
        Tamper::Resign { key, claims } => {
            let mut payload: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
            for (k, v) in claims.as_object().unwrap() {
                payload[k] = v.clone();
            }
            let kid = key.as_verification_key().key_id().cloned().unwrap();
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid.as_str()});
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(payload.to_string().as_bytes())
            );
            let sig = key
                .sign(
                    &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                    input.as_bytes(),
                )
                .unwrap();
            format!("{input}.{}", b64(&sig))
        }
    }
}

/// A fresh RSA signing key named `kid`.
fn rsa_key(kid: &str) -> Arc<CoreRsaPrivateSigningKey> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
    Arc::new(
        CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.to_owned()))).unwrap(),
    )
}

/// Failed campus sign-ins the provider was to blame for, in the audit log.
async fn refused_by_provider(env: &TestEnv) -> usize {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_name, detail FROM audit_log WHERE action = 'sign_in' AND outcome = 'failed'",
    )
    .fetch_all(&env.server.state.pool)
    .await
    .unwrap();
    rows.iter()
        .filter(|(who, d)| who == "-" && d.contains("\"campus\"") && d.contains("provider_refused"))
        .count()
}

/// A sign-in of `sub` that must fail with `bad_id_token`, making no
/// account or session and leaving an audit entry; the error message.
async fn refused_id_token(env: &TestEnv, sub: &str, username: &str) -> String {
    let before = refused_by_provider(env).await;
    let r = sign_in(env, sub).await;
    assert!(set_cookie(&r, "pvce_session").is_none(), "no session");
    let got = json_of(r).await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "bad_id_token");
    assert!(
        pvce::users::find_with_hash(&env.server.state.pool, username)
            .await
            .unwrap()
            .is_none(),
        "no account for {username}"
    );
    assert_eq!(refused_by_provider(env).await, before + 1, "audited");
    got.1["message"].as_str().unwrap_or_default().to_owned()
}

async fn behind_proxy() -> (Provider, Proxy, TestEnv, tempfile::TempDir) {
    let op = Provider::start().await;
    let proxy = Proxy::start(&op.url).await;
    let auth_dir = tempfile::tempdir().unwrap();
    let file = auth_file(&proxy.url, auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(file)).await;
    for (sub, name) in [("u-fay", "test-fay"), ("u-eve", "test-eve")] {
        op.set_user(
            sub,
            json!({"preferred_username": name, "eduPersonAffiliation": ["student"]}),
        )
        .await;
    }
    (op, proxy, env, auth_dir)
}

#[tokio::test]
async fn oidc_refuses_tampered_expired_and_misaddressed_id_tokens() {
    let (_op, proxy, env, _dir) = behind_proxy().await;
    let key = rsa_key("test-k1");
    // The party in the path holds the key pvce trusts (it serves the key
    // set): it can sign anything, so only the claims can give it away.
    proxy.publish(&[&key]);
    let resign = |claims: Value| Tamper::Resign {
        key: key.clone(),
        claims,
    };

    // Untouched claims signed by the trusted key: a good sign-in, which
    // also shows every hop goes through the proxy.
    proxy.tamper(resign(json!({})));
    let r = sign_in(&env, "u-fay").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    assert!(set_cookie(&r, "pvce_session").is_some());

    // Bits of the signature flipped.
    proxy.tamper(Tamper::FlipSignature);
    refused_id_token(&env, "u-eve", "test-eve").await;

    // Validly signed, but expired an hour ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    proxy.tamper(resign(json!({"exp": now - 3600, "iat": now - 7200})));
    let message = refused_id_token(&env, "u-eve", "test-eve").await;
    assert!(message.to_lowercase().contains("expired"), "{message}");

    // Validly signed, for another client.
    proxy.tamper(resign(json!({"aud": ["test-other-client"]})));
    let message = refused_id_token(&env, "u-eve", "test-eve").await;
    assert!(message.to_lowercase().contains("audience"), "{message}");
}

#[tokio::test]
async fn oidc_follows_a_key_rotation_and_refuses_unpublished_keys() {
    let (_op, proxy, env, _dir) = behind_proxy().await;
    let (old, new, forged) = (rsa_key("test-k1"), rsa_key("test-k2"), rsa_key("test-k3"));
    proxy.publish(&[&old]);
    proxy.tamper(Tamper::Resign {
        key: old.clone(),
        claims: json!({}),
    });
    let r = sign_in(&env, "u-fay").await;
    assert!(
        set_cookie(&r, "pvce_session").is_some(),
        "{:?}",
        r.headers()
    );
    assert_eq!(proxy.jwks_fetches(), 1, "the keys are cached");

    // The provider rotates: a new key signs, and only it is published.
    proxy.publish(&[&new]);
    proxy.tamper(Tamper::Resign {
        key: new.clone(),
        claims: json!({}),
    });
    let r = sign_in(&env, "u-fay").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    assert!(set_cookie(&r, "pvce_session").is_some());
    assert_eq!(proxy.jwks_fetches(), 2, "refetched once for the new key");

    // A key the provider never published is still refused, and within the
    // minute after a refetch it does not make pvce fetch the keys again.
    proxy.tamper(Tamper::Resign {
        key: forged,
        claims: json!({}),
    });
    refused_id_token(&env, "u-eve", "test-eve").await;
    assert_eq!(proxy.jwks_fetches(), 2, "rate-limited");
}
