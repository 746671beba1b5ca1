//! Black-box tests of sign-in: the session cookie over https (`Secure`,
//! `__Host-`), the per-source budget against username spraying, device
//! cookies that let a known browser in meanwhile, and the bounded
//! password-check queue (503 `busy`). Real server on loopback, real SQLite.

use crate::common::{PASSWORD, TestEnv};
use pvce::auth::Role;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

const PUBLIC: &str = "https://lab.example.edu";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The `Set-Cookie` value for cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// `name=value` of cookie `name`, as a browser sends it back.
    fn cookie_pair(&self, name: &str) -> String {
        let c = self
            .set_cookie(name)
            .unwrap_or_else(|| panic!("no {name} cookie"));
        c.split(';').next().unwrap().to_owned()
    }

    fn retry_after(&self) -> u64 {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: no Retry-After: {:?}", self.status, self.headers))
    }
}

async fn login(env: &TestEnv, username: &str, password: &str, extra: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .json(&json!({"username": username, "password": password}));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"));
    Answer {
        status,
        headers,
        body,
    }
}

async fn me_with_cookie(env: &TestEnv, cookie: &str) -> StatusCode {
    reqwest::Client::new()
        .get(env.url("/api/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

fn assert_secure_host_cookie(c: &str) {
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(c.contains(attr), "{attr} missing: {c}");
    }
    assert!(!c.to_ascii_lowercase().contains("domain="), "{c}");
}

#[tokio::test]
async fn https_public_url_gives_a_secure_host_prefixed_session_cookie() {
    let env = TestEnv::start_with(|c| c.public_url = Some(PUBLIC.into())).await;
    env.user("test-sec", Role::Student).await;
    let got = login(&env, "test-sec", PASSWORD, &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let session = got
        .set_cookie("__Host-pvce_session")
        .expect("__Host- session cookie");
    assert_secure_host_cookie(&session);
    assert!(got.set_cookie("pvce_session").is_none(), "no plain cookie");
    assert_secure_host_cookie(&got.set_cookie("__Host-pvce_device").expect("device cookie"));

    // That cookie authenticates; the plain name with the same token does
    // not (over https it could have been planted over http).
    let pair = got.cookie_pair("__Host-pvce_session");
    assert_eq!(me_with_cookie(&env, &pair).await, StatusCode::OK);
    let token = got.body["token"].as_str().unwrap();
    let plain = format!("pvce_session={token}");
    assert_eq!(me_with_cookie(&env, &plain).await, StatusCode::UNAUTHORIZED);

    // Logout (cookie-authenticated, from the site's own origin) clears it.
    let out = reqwest::Client::new()
        .post(env.url("/api/auth/logout"))
        .header("cookie", &pair)
        .header("origin", PUBLIC)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<&str> = out
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("__Host-pvce_session=;")
                && c.contains("Max-Age=0")
                && c.contains("; Secure")),
        "{cleared:?}"
    );
    assert_eq!(me_with_cookie(&env, &pair).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_trusted_proxy_saying_https_gives_the_secure_cookie() {
    let env = TestEnv::start_with(|c| c.trust_forwarded_proto = true).await;
    env.user("test-prx", Role::Student).await;
    let got = login(
        &env,
        "test-prx",
        PASSWORD,
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_secure_host_cookie(
        &got.set_cookie("__Host-pvce_session")
            .expect("__Host- cookie"),
    );
    let pair = got.cookie_pair("__Host-pvce_session");
    let res = reqwest::Client::new()
        .get(env.url("/api/me"))
        .header("cookie", &pair)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Over plain http (the proxy says so, or says nothing): as before.
    let got = login(&env, "test-prx", PASSWORD, &[]).await;
    let plain = got.set_cookie("pvce_session").expect("plain cookie");
    assert!(!plain.contains("Secure"), "{plain}");
    assert_eq!(
        me_with_cookie(&env, &got.cookie_pair("pvce_session")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn spraying_usernames_gets_429_but_a_known_browser_still_signs_in() {
    let env = TestEnv::start_with(|c| {
        c.login_ip_burst = 5;
        c.login_ip_per_minute = 1;
    })
    .await;
    env.user("test-known", Role::Student).await;
    env.user("test-new", Role::Student).await;
    // The student signed in from this browser before: it holds a device cookie.
    let first = login(&env, "test-known", PASSWORD, &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let device = first.cookie_pair("pvce_device");

    // One try each for many usernames from the same address.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let got = login(&env, &format!("test-spray-{i}"), "guess-123", &[]).await;
        if got.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(got.body["error"], "too_many_attempts", "{}", got.body);
            assert!(got.retry_after() >= 1);
        }
        statuses.push(got.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);

    // The address's budget is spent: a browser without a device cookie waits…
    let got = login(&env, "test-new", PASSWORD, &[]).await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS, "{}", got.body);
    // …one that signed in as this user before does not.
    let got = login(&env, "test-known", PASSWORD, &[("cookie", &device)]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    // A device cookie counts only for the user it was issued to.
    let got = login(&env, "test-new", PASSWORD, &[("cookie", &device)]).await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS, "{}", got.body);
}

#[tokio::test]
async fn a_full_password_check_queue_answers_503_busy() {
    let env = TestEnv::start_with(|c| {
        c.login_hash_workers = 1;
        c.login_hash_queue = 0;
    })
    .await;
    let n = 12;
    for i in 0..n {
        env.user(&format!("test-q{i}"), Role::Student).await;
    }
    let logins = (0..n).map(|i| {
        let env = &env;
        async move { login(env, &format!("test-q{i}"), PASSWORD, &[]).await }
    });
    let answers = futures::future::join_all(logins).await;
    let mut ok = 0;
    let mut busy = 0;
    for a in &answers {
        match a.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(a.body["error"], "busy", "{}", a.body);
                assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
                assert!(a.retry_after() >= 1);
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} signed in, {busy} busy");
    // Refused sign-ins were not counted as failures: they get in on retry.
    for (i, a) in answers.iter().enumerate() {
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            let got = login(&env, &format!("test-q{i}"), PASSWORD, &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        }
    }
}
