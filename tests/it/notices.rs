//! The desk's notifications end to end (src/desk/notices.rs): a student
//! reports, an admin dispatches, staff comment (and note internally) and
//! resolve; the right people get in-app rows, real mail reaches a real SMTP
//! server (aiosmtpd, see `notify.rs`) in each recipient's language, and
//! webhooks reach a local HTTP server — the user's own (within the allowed
//! prefix) and the server's. A failing webhook is retried on the service's
//! clock and never costs the in-app row. Passes are run by calling the
//! service with the time, as the background loop does.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{TestEnv, assert_error};
use crate::notify::{SmtpSink, receiver};
use pvce::auth::Role;
use pvce::desk::notify::{SmtpSecurity, WebhookFormat, WebhookTarget};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

async fn pass(env: &TestEnv, at: OffsetDateTime) {
    env.server.state.notices.run_once(at).await.unwrap();
}

#[tokio::test]
async fn a_ticket_life_notifies_the_right_people_in_their_language() {
    let mut sink = SmtpSink::start(&[]).await;
    let (hooks, mut hits) = receiver().await;
    let smtp_port = sink.port;
    let server_hook = format!("{hooks}/hook/server");
    let allow = format!("{hooks}/hook/");
    let env = TestEnv::start_with(|c| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = Some(smtp_port);
        c.smtp_security = SmtpSecurity::None;
        c.smtp_from = "pvce 服务台 <desk@lab.example>".into();
        c.notify_webhooks = vec![WebhookTarget {
            url: server_hook,
            format: WebhookFormat::Json,
        }];
        c.notify_webhook_lang = pvce::desk::notify::Lang::En;
        c.notify_webhook_allow = vec![allow];
        c.public_url = Some("https://pvce.lab.example".into());
        c.notify_loop = false;
    })
    .await;
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [
        ("test-n-student", Role::Student),
        ("test-n-staff", Role::Staff),
        ("test-n-admin", Role::Admin),
    ] {
        ids.insert(
            name,
            env.user(name, role).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let student = env.client("test-n-student").await;
    let staff = env.client("test-n-staff").await;
    let admin = env.client("test-n-admin").await;

    // Defaults: in-app and everything else once an address is set.
    let (s, set) = student.get("/api/me/notification-settings").await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["lang"], "zh-CN");
    assert_eq!(
        set["events"]["resolved"],
        json!({"in_app": true, "email": true, "webhook": true})
    );
    assert_eq!(set["email_available"], true);
    assert_eq!(set["webhook_any_url"], false);

    // Bad input: 4xx with the error body; a student cannot aim the server
    // at an address outside the allowed prefix (SSRF).
    let put = |url: &str| json!({"lang": "zh-CN", "webhook_url": url});
    assert_error(
        &student
            .send(
                reqwest::Method::PUT,
                "/api/me/notification-settings",
                Some(put("ftp://x/y")),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_webhook_url",
    );
    assert_error(
        &student
            .send(
                reqwest::Method::PUT,
                "/api/me/notification-settings",
                Some(put("http://169.254.169.254/latest/meta-data")),
            )
            .await,
        StatusCode::FORBIDDEN,
        "webhook_not_allowed",
    );
    assert_error(
        &student
            .send(
                reqwest::Method::PUT,
                "/api/me/notification-settings",
                Some(json!({"lang": "en", "email": "not an address"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &student
            .send(
                reqwest::Method::PUT,
                "/api/me/notification-settings",
                Some(json!({"lang": "fr"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let (s, set) = student
        .send(
            reqwest::Method::PUT,
            "/api/me/notification-settings",
            Some(json!({
                "lang": "zh-CN",
                "email": "student@lab.example",
                "webhook_url": format!("{hooks}/hook/student"),
                "webhook_format": "json",
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    let (s, set) = staff
        .send(
            reqwest::Method::PUT,
            "/api/me/notification-settings",
            Some(json!({
                "lang": "en",
                "email": "staff@lab.example",
                "events": {"commented": {"in_app": true, "email": false, "webhook": false}},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["events"]["commented"]["email"], false);
    assert_eq!(set["events"]["assigned"]["email"], true);

    // The ticket's life.
    let (s, t) = student
        .post(
            "/api/tickets",
            json!({"kind": "incident", "title": "虚拟机黑屏", "description": "开机后黑屏"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let number = t["number"].as_i64().unwrap();
    let (s, v) = admin
        .post(
            &format!("/api/tickets/{id}/assign"),
            json!({"assignee_id": ids["test-n-staff"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = staff
        .post(
            &format!("/api/tickets/{id}/comments"),
            json!({"text": "请重启一次试试"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = staff
        .post(
            &format!("/api/tickets/{id}/comments"),
            json!({"text": "INTERNAL-ONLY 节点内存紧张", "internal": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = staff
        .post(
            &format!("/api/tickets/{id}/resolve"),
            json!({"resolution": "重建了个人层"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    pass(&env, OffsetDateTime::now_utc()).await;

    // In-app: the student has the reply and the resolution (not the
    // assignment, not the internal note); staff the assignment; the admin,
    // who only acted, nothing.
    let (_, page) = student.get("/api/me/notifications?lang=en").await;
    assert_eq!(page["unread"], 2, "{page}");
    let subjects: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        vec![
            format!("[pvce] Your ticket #{number} was resolved: 虚拟机黑屏"),
            format!("[pvce] New comment on ticket #{number}: 虚拟机黑屏"),
        ]
    );
    assert!(!page.to_string().contains("INTERNAL-ONLY"), "{page}");
    assert_eq!(page["items"][0]["ticket_id"], id.as_str());
    let (_, zh) = student.get("/api/me/notifications").await;
    assert_eq!(
        zh["items"][0]["subject"],
        format!("[pvce] 你的工单 #{number} 已解决：虚拟机黑屏"),
        "the settings' language by default"
    );
    let (_, page) = staff.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 1, "{page}");
    assert_eq!(page["items"][0]["kind"], "assigned");
    let (_, page) = admin.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 0, "{page}");

    // Mail: three messages, each in its reader's language.
    let mut mails = BTreeSet::new();
    for _ in 0..3 {
        let m = sink.next_mail().await;
        let to = m["rcpt_tos"][0].as_str().unwrap().to_owned();
        mails.insert((to, m["subject"].as_str().unwrap().to_owned()));
        if m["rcpt_tos"][0] == "student@lab.example"
            && m["subject"].as_str().unwrap().contains("已解决")
        {
            let body = m["body"].as_str().unwrap();
            assert!(body.contains("重建了个人层"), "{body}");
            assert!(
                body.contains(&format!("https://pvce.lab.example/#/tickets/{id}")),
                "{body}"
            );
        }
    }
    assert_eq!(
        mails,
        BTreeSet::from([
            (
                "staff@lab.example".to_owned(),
                format!("[pvce] Ticket #{number} assigned to you: 虚拟机黑屏")
            ),
            (
                "student@lab.example".to_owned(),
                format!("[pvce] 工单 #{number} 有新回复：虚拟机黑屏")
            ),
            (
                "student@lab.example".to_owned(),
                format!("[pvce] 你的工单 #{number} 已解决：虚拟机黑屏")
            ),
        ])
    );

    // Webhooks: the student's two (in Chinese), the server's three (in
    // English; never the internal note).
    let mut got = Vec::new();
    for _ in 0..5 {
        let hit = tokio::time::timeout(Duration::from_secs(20), hits.recv())
            .await
            .expect("a webhook")
            .unwrap();
        let v: Value = serde_json::from_str(&hit.body).unwrap();
        got.push((
            hit.token,
            v["event"].as_str().unwrap().to_owned(),
            v["lang"].as_str().unwrap().to_owned(),
        ));
        assert!(!hit.body.contains("INTERNAL-ONLY"), "{}", hit.body);
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("server".into(), "assigned".into(), "en".into()),
            ("server".into(), "commented".into(), "en".into()),
            ("server".into(), "resolved".into(), "en".into()),
            ("student".into(), "commented".into(), "zh-CN".into()),
            ("student".into(), "resolved".into(), "zh-CN".into()),
        ]
    );

    // Read: one, then all; someone else's is not found.
    let (_, page) = student.get("/api/me/notifications").await;
    let first = page["items"][0]["id"].as_i64().unwrap();
    assert_error(
        &staff
            .post_empty(&format!("/api/me/notifications/{first}/read"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, _) = student
        .post_empty(&format!("/api/me/notifications/{first}/read"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, page) = student.get("/api/me/notifications?unread=true").await;
    assert_eq!(page["unread"], 1);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, r) = student.post_empty("/api/me/notifications/read-all").await;
    assert_eq!(r["marked"], 1);
    let (_, page) = student.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 0);
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "read ones stay listed"
    );
    assert_error(
        &student.get("/api/me/notifications?limit=0").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[tokio::test]
async fn a_failing_webhook_is_retried_later_and_the_in_app_row_stays() {
    let (hooks, _hits) = receiver().await;
    let env = TestEnv::start_with(|c| c.notify_loop = false).await;
    let admin_id = env.user("test-nf-admin", Role::Admin).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.user("test-nf-staff", Role::Staff).await;
    let admin = env.client("test-nf-admin").await;
    let staff = env.client("test-nf-staff").await;
    // An admin may aim anywhere: here at an endpoint that answers 500.
    let (s, set) = admin
        .send(
            reqwest::Method::PUT,
            "/api/me/notification-settings",
            Some(json!({"lang": "en", "webhook_url": format!("{hooks}/fail")})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["webhook_any_url"], true);
    let (_, t) = admin
        .post(
            "/api/tickets",
            json!({"kind": "request", "title": "More disk"}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let staff_id: String =
        sqlx::query_scalar("SELECT id FROM users WHERE username = 'test-nf-staff'")
            .fetch_one(&env.server.state.pool)
            .await
            .unwrap();
    let (s, _) = staff
        .post(
            &format!("/api/tickets/{id}/assign"),
            json!({"assignee_id": staff_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = staff
        .post(
            &format!("/api/tickets/{id}/comments"),
            json!({"text": "on it"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let t0 = OffsetDateTime::now_utc();
    pass(&env, t0).await;
    let delivery = || async {
        sqlx::query_as::<_, (i64, Option<String>, Option<String>, Option<String>)>(
            "SELECT attempts, last_error, sent_at, gave_up_at FROM notification_deliveries WHERE user_id = $1",
        )
        .bind(&admin_id)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap()
    };
    let (attempts, error, sent, gave_up) = delivery().await;
    assert_eq!(attempts, 1);
    let error = error.unwrap();
    assert!(error.contains("500"), "{error}");
    assert!(!error.contains("/fail"), "the URL is not recorded: {error}");
    assert!(sent.is_none() && gave_up.is_none());
    // The bell still rings.
    let (_, page) = admin.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 1, "{page}");
    // Not due again within the minute; due after it.
    pass(&env, t0 + time::Duration::seconds(30)).await;
    assert_eq!(delivery().await.0, 1);
    pass(&env, t0 + time::Duration::seconds(61)).await;
    assert_eq!(delivery().await.0, 2);
    // Given up after the last attempt, still without losing the row.
    let mut at = t0 + time::Duration::seconds(61);
    for _ in 0..10 {
        at += time::Duration::hours(1);
        pass(&env, at).await;
    }
    let (attempts, _, sent, gave_up) = delivery().await;
    assert_eq!(attempts, i64::from(pvce::desk::notices::MAX_ATTEMPTS));
    assert!(sent.is_none() && gave_up.is_some());
    let (_, page) = admin.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 1);
}

/// A complaint gets an admin's written reply (only an admin's, only on a
/// complaint) that its reporter reads and is notified of, counted in the
/// figures; a teacher's service request linked to a draft template is
/// resolved, with a work-log line, when that template is sealed.
#[tokio::test]
async fn complaints_get_a_reply_and_requests_resolve_when_their_template_is_sealed() {
    let env = TestEnv::start_with(|c| c.notify_loop = false).await;
    let teacher_id = env.user("test-nc-teacher", Role::Teacher).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.user("test-nc-student", Role::Student).await;
    let staff_id = env.user("test-nc-staff", Role::Staff).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.user("test-nc-admin", Role::Admin).await;
    let teacher = env.client("test-nc-teacher").await;
    let student = env.client("test-nc-student").await;
    let staff = env.client("test-nc-staff").await;
    let admin = env.client("test-nc-admin").await;

    // The complaint and its reply.
    let (_, c) = student
        .post(
            "/api/tickets",
            json!({"kind": "complaint", "title": "机房总是断网"}),
        )
        .await;
    let cid = c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c["can"]["reply"], false,
        "the reporter does not answer their own complaint"
    );
    let reply = format!("/api/tickets/{cid}/reply");
    assert_error(
        &staff.post(&reply, json!({"text": "x"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &admin.post(&reply, json!({"text": "  "})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (_, inc) = student
        .post("/api/tickets", json!({"kind": "incident", "title": "slow"}))
        .await;
    assert_error(
        &admin
            .post(
                &format!("/api/tickets/{}/reply", inc["id"].as_str().unwrap()),
                json!({"text": "x"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (s, v) = admin
        .post(&reply, json!({"text": "已更换交换机，向你致歉。"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["can"]["reply"], true);
    let (_, seen) = student.get(&format!("/api/tickets/{cid}")).await;
    let e = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "reply")
        .expect("the reply in the timeline");
    assert_eq!(e["text"], "已更换交换机，向你致歉。");
    assert_eq!(e["internal"], false);
    let (_, stats) = admin.get("/api/desk/stats").await;
    assert_eq!(stats["complaints"], 1, "{stats}");
    assert_eq!(stats["complaints_replied"], 1, "{stats}");
    pass(&env, OffsetDateTime::now_utc()).await;
    let (_, page) = student.get("/api/me/notifications?lang=en").await;
    assert_eq!(page["unread"], 1, "{page}");
    assert_eq!(page["items"][0]["kind"], "commented");

    // A draft template (its layer a real qcow2 image), a request linked to it.
    let pool = &env.server.state.pool;
    let tid = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO templates (id, name, os, state, created_by, created_at) VALUES ($1, 'test-nc-matlab', 'linux', 'draft', $2, $3)",
    )
    .bind(tid.to_string())
    .bind(&teacher_id)
    .bind(pvce::db::now())
    .execute(pool)
    .await
    .unwrap();
    let layer = env.server.state.storage.template_path(tid);
    std::fs::create_dir_all(layer.parent().unwrap()).unwrap();
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&layer)
        .arg("16M")
        .status()
        .unwrap();
    assert!(made.success());
    let (_, r) = teacher
        .post(
            "/api/tickets",
            json!({"kind": "request", "title": "请在课程模板中安装 MATLAB"}),
        )
        .await;
    let rid = r["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r["can"]["link_template"], true,
        "the teacher who asked links it"
    );
    let link = format!("/api/tickets/{rid}/template");
    assert_error(
        &student.post(&link, json!({"template_id": tid})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &teacher
            .post(&link, json!({"template_id": uuid::Uuid::new_v4()}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unacceptable",
    );
    assert_error(
        &staff
            .post(
                &format!("/api/tickets/{cid}/template"),
                json!({"template_id": tid}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (s, v) = teacher.post(&link, json!({"template_id": tid})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "new", "a draft: nothing happens yet");
    let (s, _) = staff
        .post(
            &format!("/api/tickets/{rid}/assign"),
            json!({"assignee_id": staff_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Sealing it (the real seal path) resolves the request.
    let user = pvce::users::get(pool, uuid::Uuid::parse_str(&teacher_id).unwrap())
        .await
        .unwrap();
    let st = &env.server.state;
    pvce::builds::seal(
        pool,
        &st.storage,
        &st.vms,
        tid,
        &user,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let (_, v) = teacher.get(&format!("/api/tickets/{rid}")).await;
    assert_eq!(v["state"], "resolved", "{v}");
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "template_linked",
            "assigned",
            "worklog",
            "resolved"
        ],
        "{v}"
    );
    let line = &v["events"][3];
    assert_eq!(line["actor_id"], Value::Null, "the server's own line");
    assert_eq!(line["data"]["template_name"], "test-nc-matlab");
    assert!(v["resolution"].as_str().unwrap().contains("test-nc-matlab"));
    // Once only: the desk's catch-up pass finds nothing more to do.
    assert_eq!(
        st.desk
            .resolve_sealed_requests(OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
    // The teacher hears of it.
    pass(&env, OffsetDateTime::now_utc()).await;
    let (_, page) = teacher.get("/api/me/notifications?lang=zh-CN").await;
    assert_eq!(page["items"][0]["kind"], "resolved", "{page}");
    // A finished request keeps its template.
    assert_error(
        &teacher.post(&link, json!({"template_id": tid})).await,
        StatusCode::CONFLICT,
        "ticket_state",
    );
}
