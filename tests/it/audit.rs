//! The audit log (issue 16): actions done through the API are found in
//! `GET /api/audit` with the right who, what, target and address; the table
//! refuses updates and deletes; retention prunes by the time passed in.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::lab::course_with_student_vm;
use crate::common::{Client, TestEnv, assert_error};
use pvce::auth::Role;

/// The entries of `GET /api/audit?{query}` (as admin).
async fn entries(admin: &Client, query: &str) -> Vec<Value> {
    let (s, v) = admin.get(&format!("/api/audit?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// The one entry of `action` on target `target_id`, newest first.
async fn one(admin: &Client, action: &str, target_id: &str) -> Value {
    let got = entries(admin, &format!("action={action}&target_id={target_id}")).await;
    assert_eq!(got.len(), 1, "one {action} on {target_id}: {got:?}");
    got[0].clone()
}

/// A sign-in attempt with `X-Forwarded-For: forwarded`.
async fn sign_in(env: &TestEnv, username: &str, password: &str, forwarded: &str) -> StatusCode {
    reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn actions_are_recorded_with_who_what_target_and_address() {
    // Behind a proxy the address is the one it reports, when trusted.
    let env = TestEnv::start_with(|c| c.trust_forwarded_for = true).await;
    let lab = course_with_student_vm(&env, "test-aud101").await;
    let (alice, vm) = (lab.alice, lab.vm);
    let admin_user = env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let bob_id = {
        let (_, users) = admin.get("/api/users").await;
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "test-bob")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // A failed sign-in, from a proxied client.
    assert_eq!(
        sign_in(
            &env,
            "test-alice",
            "wrong-password",
            "198.51.100.20, 203.0.113.9"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let failed = entries(&admin, "action=sign_in&user=test-alice").await;
    let failed: Vec<&Value> = failed.iter().filter(|e| e["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["ip"], "203.0.113.9", "{}", failed[0]);
    assert_eq!(failed[0]["detail"]["provider"], "local");
    assert_eq!(failed[0]["detail"]["reason"], "wrong_password");
    assert_eq!(failed[0]["target"]["label"], "test-alice");
    assert!(failed[0]["target"]["id"].is_string(), "the account tried");
    assert!(
        !failed[0].to_string().contains("wrong-password"),
        "no password in the log"
    );
    // The successful sign-ins the lab made, with the user's id.
    let alice_id = failed[0]["user_id"].clone();
    assert!(alice_id.is_null(), "failed: no id claimed: {}", failed[0]);
    let ok = entries(&admin, "action=sign_in&user=test-admin").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["outcome"], "ok");
    assert_eq!(ok[0]["user_id"], admin_user["id"]);
    assert_eq!(ok[0]["ip"], "127.0.0.1");

    // The student starts her VM; the teacher opens its console.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let start = one(&admin, "vm_start", &vm).await;
    assert_eq!(start["user_name"], "test-alice");
    assert_eq!(start["outcome"], "ok");
    assert_eq!(start["target"]["kind"], "vm");
    assert!(
        start["target"]["label"]
            .as_str()
            .unwrap()
            .contains("test-aud101"),
        "{start}"
    );
    assert_eq!(start["ip"], "127.0.0.1");
    let (s, t) = teacher.post_empty(&format!("/api/vms/{vm}/console")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let open = one(&admin, "console_open", &vm).await;
    assert_eq!(open["user_name"], "test-teacher");
    assert_eq!(open["detail"]["owner"], "test-alice");
    assert_eq!(open["detail"]["other_user"], true);
    assert_eq!(open["detail"]["role"], "teacher");
    assert!(!open.to_string().contains(t["token"].as_str().unwrap()));
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        one(&admin, "vm_poweroff", &vm).await["user_name"],
        "test-alice"
    );

    // The admin makes Bob a teacher, then disables him.
    let (s, u) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/users/{bob_id}"),
            Some(json!({"role": "teacher"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let role = one(&admin, "user_role_changed", &bob_id).await;
    assert_eq!(role["user_id"], admin_user["id"]);
    assert_eq!(role["target"]["label"], "test-bob");
    assert_eq!(role["detail"], json!({"from": "student", "to": "teacher"}));
    let (s, u) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/users/{bob_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    one(&admin, "user_disabled", &bob_id).await;

    // Filters combine; pages are newest first.
    let by_admin = entries(
        &admin,
        &format!("user_id={}", admin_user["id"].as_str().unwrap()),
    )
    .await;
    let actions: Vec<&str> = by_admin
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user_disabled", "user_role_changed", "sign_in"],
        "{by_admin:?}"
    );
    let first = entries(&admin, "limit=1").await;
    let second = entries(&admin, "limit=1&offset=1").await;
    assert!(first[0]["seq"].as_i64() > second[0]["seq"].as_i64());
    assert!(
        entries(&admin, "from=2999-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert_eq!(
        entries(&admin, "to=2999-01-01T00:00:00Z&action=vm_start")
            .await
            .len(),
        1
    );
    assert_error(
        &admin.get("/api/audit?action=drop_tables").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &admin.get("/api/audit?from=yesterday").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // The CSV has the same entries.
    let res = admin
        .request(reqwest::Method::GET, "/api/audit.csv?action=console_open")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("at,user_id,user_name,action"), "{csv}");
    assert!(
        lines[1].contains("test-teacher") && lines[1].contains(&vm),
        "{csv}"
    );
}

#[tokio::test]
async fn the_log_is_append_only_and_pruned_by_retention() {
    let env = TestEnv::start_with(|c| c.audit_retention_days = 30).await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    // Untrusted, X-Forwarded-For is the client's word only: not recorded.
    assert_eq!(
        sign_in(&env, "test-nobody", "x-password-1", "203.0.113.9").await,
        StatusCode::UNAUTHORIZED
    );
    let failed = entries(&admin, "user=test-nobody").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["ip"], "127.0.0.1");
    assert_eq!(failed[0]["outcome"], "failed");
    assert_eq!(failed[0]["detail"]["reason"], "unknown_user");
    assert!(failed[0]["target"]["id"].is_null());
    let (s, _) = admin.post_empty("/api/auth/logout").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let admin = env.client("test-admin").await;
    assert_eq!(entries(&admin, "action=sign_out").await.len(), 1);

    // Not even pvce's own database connection can change or remove entries.
    let pool = &env.server.state.pool;
    let update = sqlx::query("UPDATE audit_log SET user_name = 'someone-else'")
        .execute(pool)
        .await;
    assert!(
        update.is_err_and(|e| e.to_string().contains("append-only")),
        "update refused"
    );
    let delete = sqlx::query("DELETE FROM audit_log").execute(pool).await;
    assert!(
        delete.is_err_and(|e| e.to_string().contains("append-only")),
        "delete refused"
    );
    let count = entries(&admin, "").await.len();
    assert_eq!(count, 4, "2 sign-ins, 1 failure, 1 sign-out");

    // Retention: nothing is due today or in 29 days; 31 days on, all is.
    let audit = &env.server.state.audit;
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(audit.prune(now).await.unwrap(), 0);
    assert_eq!(
        audit.prune(now + time::Duration::days(29)).await.unwrap(),
        0
    );
    assert_eq!(entries(&admin, "").await.len(), count);
    let removed = audit
        .prune(now + time::Duration::days(31) + time::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(removed, count as u64);
    // The horizon never goes back, so pruned-past stays pruned-past.
    let back = sqlx::query("UPDATE audit_horizon SET horizon = '2000-01-01T00:00:00Z'")
        .execute(pool)
        .await;
    assert!(back.is_err(), "the horizon went back");
    // Reading needs the admin role.
    env.user("test-staff", Role::Staff).await;
    let staff = env.client("test-staff").await;
    assert_error(
        &staff.get("/api/audit").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}
