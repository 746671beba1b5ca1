//! Class time, hours (issue 15): usage metered from the VMs' power history
//! and the course's timetable — per student, VM and lab date, in and outside
//! sessions, as JSON and CSV for the course's teacher; the student's own
//! hours on their course card; quotas refusing starts with a real VM; the
//! idle auto-stop shutting a real VM down at a test-chosen time.

use crate::common::lab::course_with_student_vm;
use crate::common::{TestEnv, assert_error, power_rows};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

/// Writes a VM's power history as the VM manager would have (the manager
/// stamps real time; this test needs chosen times in the past).
async fn power(env: &TestEnv, vm: &str, at: &str, on: bool) {
    sqlx::query("INSERT INTO vm_power_log (vm_id, at, running) VALUES ($1, $2, $3)")
        .bind(vm)
        .bind(at)
        .bind(i64::from(on))
        .execute(&env.server.state.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn usage_is_split_by_sessions_per_student_and_day() {
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-usage").await;
    let teacher = env.client("test-teacher").await;
    env.user("test-usage-other", Role::Teacher).await;
    let other = env.client("test-usage-other").await;
    let (_, vm) = lab.alice.get(&format!("/api/vms/{}", lab.vm)).await;
    let cid = vm["course_id"].as_str().unwrap().to_owned();

    // A session 08:00–09:00 lab time (+08:00) on 2026-11-02; Alice's VM on
    // 08:30–10:00 (30 min in, 60 out) and again 23:30–00:30 across the lab's
    // midnight (30 min on each date), plus a repeated "on" (ignored).
    let (s, ses) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"date": "2026-11-02", "start": "08:00", "end": "09:00"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ses}");
    for (at, on) in [
        ("2026-11-02T00:30:00Z", true),
        ("2026-11-02T00:40:00Z", true),
        ("2026-11-02T02:00:00Z", false),
        ("2026-11-02T15:30:00Z", true),
        ("2026-11-02T16:30:00Z", false),
    ] {
        power(&env, &lab.vm, at, on).await;
    }

    let path = format!("/api/courses/{cid}/usage?from=2026-11-01&to=2026-11-03");
    let (s, usage) = teacher.get(&path).await;
    assert_eq!(s, StatusCode::OK, "{usage}");
    let students = usage["students"].as_array().unwrap();
    assert_eq!(
        students.len(),
        2,
        "both enrolled students are listed: {usage}"
    );
    let alice = students
        .iter()
        .find(|s| s["username"] == "test-alice")
        .unwrap();
    assert_eq!(alice["in_session_minutes"], 30, "{usage}");
    assert_eq!(alice["outside_minutes"], 90 + 30, "{usage}");
    let days: Vec<(&str, i64, i64)> = alice["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap(),
                d["in_session_minutes"].as_i64().unwrap(),
                d["outside_minutes"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![("2026-11-02", 30, 90), ("2026-11-03", 0, 30)],
        "{usage}"
    );
    let bob = students
        .iter()
        .find(|s| s["username"] == "test-bob")
        .unwrap();
    assert_eq!(bob["outside_minutes"], 0);

    // The same as CSV, one line per student, VM and date.
    let res = teacher
        .request(reqwest::Method::GET, &format!("{path}&format=csv"))
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
    assert_eq!(
        lines,
        vec![
            "course,username,display_name,vm,date,in_session_minutes,outside_minutes",
            &format!(
                "test-usage,test-alice,{},linux,2026-11-02,30,90",
                alice["display_name"].as_str().unwrap()
            ),
            &format!(
                "test-usage,test-alice,{},linux,2026-11-03,0,30",
                alice["display_name"].as_str().unwrap()
            ),
        ],
        "{csv}"
    );

    // A period before anything ran: nothing.
    let (s, empty) = teacher
        .get(&format!(
            "/api/courses/{cid}/usage?from=2026-10-01&to=2026-10-31"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        empty["students"][0]["days"].as_array().unwrap().is_empty(),
        "{empty}"
    );

    // The student's own hours: outside sessions since the course began, no budget.
    let (s, mine) = lab.alice.get("/api/me/usage").await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine[0]["course_id"], cid.as_str(), "{mine}");
    assert_eq!(mine[0]["outside_minutes"], 90 + 30, "{mine}");
    assert_eq!(mine[0]["in_session_minutes"], 30, "{mine}");
    assert_eq!(mine[0]["budget_minutes"], serde_json::Value::Null);

    // Who may not: the student, another teacher (not even told it exists).
    assert_error(
        &lab.alice.get(&path).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(&other.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    // Reversed or too long: 422 invalid_range; no such day: 422.
    for (q, code) in [
        ("from=2026-11-05&to=2026-11-01", "invalid_range"),
        ("from=2025-01-01&to=2026-11-01", "invalid_range"),
        ("from=2026-02-30", "unacceptable"),
        ("from=0000-00-00&to=0000-00-00", "unacceptable"),
    ] {
        let got = teacher.get(&format!("/api/courses/{cid}/usage?{q}")).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    // Malformed: 400 with a reason.
    for q in ["from=yesterday", "format=xml", "colour=red"] {
        let got = teacher.get(&format!("/api/courses/{cid}/usage?{q}")).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }

    // The service report counts the same hours from the power history, for
    // a period long past the load samples' 8 days.
    env.user("test-usage-admin", Role::Admin).await;
    let admin = env.client("test-usage-admin").await;
    let (s, r) = admin
        .post(
            "/api/reports",
            json!({"period": "custom", "from": "2026-11-01", "to": "2026-11-08"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let res = &r["sections"]["resources"];
    assert_eq!(res["vm_hours"], 2.5, "{res}");
    assert_eq!(
        res["hours_per_course"],
        json!([{"course": "test-usage", "hours": 2.5}]),
        "{res}"
    );
    // A range that begins while the VM runs: its last change before the
    // range counts (on since 00:40), clipped to the range.
    let minutes = pvce::usage::minutes_by_vm(
        &env.server.state.pool,
        time::macros::datetime!(2026-11-02 01:00 UTC),
        time::macros::datetime!(2026-11-02 16:00 UTC),
    )
    .await
    .unwrap();
    assert_eq!(minutes, vec![(Some("test-usage".to_owned()), 60 + 30)]);
}

/// Quotas with a real VM: a start over the hour budget and one over the
/// lab's limit of running VMs are refused with the quota's code and change
/// nothing; within them the VM starts, and its power history is written by
/// the VM manager as it starts and stops.
#[tokio::test]
async fn starts_over_a_quota_are_refused_and_the_power_history_is_kept() {
    // The idle and hour stops below come while the guest still boots (it
    // ignores ACPI then): a short shutdown timeout forces them off soon.
    let env = TestEnv::start_with(|c| {
        c.class_interval_secs = 0;
        c.shutdown_timeout_secs = 5;
    })
    .await;
    env.user("test-q-teacher", Role::Teacher).await;
    env.user("test-q-alice", Role::Student).await;
    env.user("test-q-admin", Role::Admin).await;
    let teacher = env.client("test-q-teacher").await;
    let alice = env.client("test-q-alice").await;
    let admin = env.client("test-q-admin").await;
    let tpl = crate::common::lab::import_tiny(&teacher, "test-q-tiny").await;
    let course = crate::common::lab::course(
        &teacher,
        json!({"code": "test-q", "name": "Quotas", "vm_specs": [
            crate::common::lab::spec("one", &tpl, 192),
            crate::common::lab::spec("two", &tpl, 192)]}),
        &["test-q-alice"],
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    let one = crate::common::lab::vm_of(&env, &alice, &course, "one").await;
    let two = crate::common::lab::vm_of(&env, &alice, &course, "two").await;
    let alice_id = alice.get("/api/me").await.1["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // No hours outside class (and no session now): refused, nothing changed.
    let (s, q) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/quota"),
            Some(json!({"hours_outside": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let got = alice.post_empty(&format!("/api/vms/{one}/start")).await;
    assert_error(&got, StatusCode::CONFLICT, "quota_hours");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("hours_outside_sessions"),
        "the message names the quota: {}",
        got.1
    );
    assert_eq!(
        alice.get(&format!("/api/vms/{one}")).await.1["state"],
        "stopped"
    );
    assert!(power_rows(&env, &one).await.is_empty());
    let started: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM slo_vm_starts WHERE vm_id = $1")
        .bind(&one)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(started, 0, "a refusal is not a failed start");

    // An extra hour for Alice, at most one running VM per user.
    let (s, q) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/quota/students/{alice_id}"),
            Some(json!({"extra_hours": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["students"][0]["budget_minutes"], 60, "{q}");
    let (s, l) = admin
        .send(
            reqwest::Method::PUT,
            "/api/quota/limits",
            Some(json!({"max_running_vms": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");

    let (s, v) = alice.post_empty(&format!("/api/vms/{one}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "running");
    let got = alice.post_empty(&format!("/api/vms/{two}/start")).await;
    assert_error(&got, StatusCode::CONFLICT, "quota_user_vms");
    assert_eq!(
        alice.get(&format!("/api/vms/{two}")).await.1["state"],
        "stopped"
    );
    // Starting the running one again is still fine (idempotent).
    let (s, _) = alice.post_empty(&format!("/api/vms/{one}/start")).await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = alice.post_empty(&format!("/api/vms/{one}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = power_rows(&env, &one).await;
    let states: Vec<bool> = rows.iter().map(|r| r.1).collect();
    assert_eq!(states, vec![true, false], "one on, one off: {rows:?}");
    assert!(power_rows(&env, &two).await.is_empty());
    // Now the second may run: the limit counts running VMs only.
    let (s, v) = alice.post_empty(&format!("/api/vms/{two}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, mine) = alice.get("/api/me/usage").await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine[0]["budget_minutes"], 60, "{mine}");

    // Idle auto-stop, at instants the test chooses: stop a VM started but
    // never connected to within 10 minutes. Off by default: nothing happens.
    let started = time::OffsetDateTime::now_utc();
    let idle = &env.server.state.idle;
    let report = idle
        .tick(started + time::Duration::minutes(30))
        .await
        .unwrap();
    assert!(report.stopped.is_empty(), "off by default: {report:?}");
    let (s, rule) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/idle"),
            Some(json!({"never_connected_minutes": 10})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rule}");
    assert_eq!(rule["never_connected_minutes"], 10);
    assert_eq!(rule["disconnected_minutes"], serde_json::Value::Null);
    let report = idle
        .tick(started + time::Duration::minutes(5))
        .await
        .unwrap();
    assert!(report.stopped.is_empty(), "not yet: {report:?}");
    assert_eq!(
        alice.get(&format!("/api/vms/{two}")).await.1["state"],
        "running"
    );
    let report = idle
        .tick(started + time::Duration::minutes(11))
        .await
        .unwrap();
    assert_eq!(
        report.stopped,
        vec![(two.parse().unwrap(), "never_connected")],
        "{report:?}"
    );
    // The normal shutdown (ACPI, forced after the timeout): it stops.
    crate::common::wait_for(
        "the idle VM to stop",
        std::time::Duration::from_secs(90),
        || async {
            let (_, v) = alice.get(&format!("/api/vms/{two}")).await;
            (v["state"] == "stopped").then_some(())
        },
    )
    .await;
    let states: Vec<bool> = power_rows(&env, &two).await.iter().map(|r| r.1).collect();
    assert_eq!(states, vec![true, false]);
    // Bad rules: 422 for values that cannot be, 400 for a body that is
    // not a rule; nothing stored.
    for (bad, status, code) in [
        (
            json!({"never_connected_minutes": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unacceptable",
        ),
        (
            json!({"cpu_below_percent": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unacceptable",
        ),
        (
            json!({"cpu_below_percent": 150, "cpu_minutes": 10}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unacceptable",
        ),
        (
            json!({"idle": true}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let got = teacher
            .send(
                reqwest::Method::PUT,
                &format!("/api/courses/{cid}/idle"),
                Some(bad),
            )
            .await;
        assert_error(&got, status, code);
    }

    // The hours: Alice's budget outside sessions is 60 minutes (her extra
    // hour; the course gives none). With the idle rule off, a VM that runs
    // on is warned before her hours are spent, then shut down.
    let (s, rule) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/idle"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rule}");
    let (s, v) = alice.post_empty(&format!("/api/vms/{two}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let now = time::OffsetDateTime::now_utc();
    let course_id: uuid::Uuid = cid.parse().unwrap();
    let alice_uuid: uuid::Uuid = alice_id.parse().unwrap();
    let usage = &env.server.state.usage;
    let (_, used) = usage.secs_of(course_id, alice_uuid, now).await.unwrap();
    // The instant her budget ends, as the meter sees it now.
    let ends = now + time::Duration::seconds(3600 - used);
    let report = idle.tick(ends - time::Duration::minutes(30)).await.unwrap();
    assert!(
        report.stopped.is_empty() && report.warned.is_empty(),
        "{report:?}"
    );
    let (s, w) = alice.get(&format!("/api/vms/{two}/idle")).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w, json!({"stop_at": null, "reason": null}));
    let report = idle.tick(ends - time::Duration::minutes(2)).await.unwrap();
    assert_eq!(
        report.warned,
        vec![two.parse::<uuid::Uuid>().unwrap()],
        "{report:?}"
    );
    assert!(report.stopped.is_empty(), "{report:?}");
    let (_, w) = alice.get(&format!("/api/vms/{two}/idle")).await;
    assert_eq!(w["reason"], "hours", "{w}");
    let stop_at = time::OffsetDateTime::parse(
        w["stop_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (stop_at - ends).abs() < time::Duration::seconds(30),
        "the warning names the end of her hours: {stop_at} vs {ends}"
    );
    // The warning is stored: the service as a restarted server loads it
    // from the same data says the same stop instant, and it stops the VM.
    let st = &env.server.state;
    let idle = pvce::idle::Idle::load(st.pool.clone(), st.vms.clone(), st.usage.clone())
        .await
        .unwrap();
    let alice_u = pvce::users::get(&st.pool, alice_uuid).await.unwrap();
    let again = idle.warning(&alice_u, two.parse().unwrap()).await.unwrap();
    assert_eq!(
        (again.stop_at, again.reason),
        (Some(stop_at), Some("hours"))
    );
    let report = idle.tick(ends + time::Duration::minutes(1)).await.unwrap();
    assert_eq!(
        report.stopped,
        vec![(two.parse().unwrap(), "hours_spent")],
        "{report:?}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idle_warnings")
        .fetch_one(&st.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a warning goes with the stop");
    crate::common::wait_for(
        "the VM whose hours are spent to stop",
        std::time::Duration::from_secs(90),
        || async {
            let (_, v) = alice.get(&format!("/api/vms/{two}")).await;
            (v["state"] == "stopped").then_some(())
        },
    )
    .await;
}

/// The 15-minute extension at the end of a session (real time: the
/// handler asks with its clock): refused unless the teacher allows it,
/// outside the session's last 15 minutes, when another class needs the
/// nodes, and a second time; granted, the VM's class status says until when.
#[tokio::test]
async fn a_student_gets_fifteen_more_minutes_only_where_allowed() {
    let env = TestEnv::start_with(|c| c.class_interval_secs = 0).await;
    let lab = course_with_student_vm(&env, "test-ext").await;
    let teacher = env.client("test-teacher").await;
    let (_, vm) = lab.alice.get(&format!("/api/vms/{}", lab.vm)).await;
    let cid = vm["course_id"].as_str().unwrap().to_owned();
    let now = time::OffsetDateTime::now_utc();
    let t = |mins: i64| pvce::db::format_time(now + time::Duration::minutes(mins));
    let (s, ses) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"starts_at": t(-30), "ends_at": t(40)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ses}");
    let sid = ses["id"].as_str().unwrap();
    let extend = format!("/api/vms/{}/class/extend", lab.vm);

    let got = lab.alice.post_empty(&extend).await;
    assert_error(&got, StatusCode::CONFLICT, "extension_denied");
    let (s, r) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/extension"),
            Some(json!({"allowed": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        teacher
            .get(&format!("/api/courses/{cid}/extension"))
            .await
            .1["allowed"],
        true
    );
    // 40 minutes left: too early.
    let got = lab.alice.post_empty(&extend).await;
    assert_error(&got, StatusCode::CONFLICT, "extension_not_now");

    // Ten minutes left; another class begins 20 minutes from now (its
    // pre-start earlier still): it needs the nodes.
    let (s, e) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/sessions/{sid}"),
            Some(json!({"starts_at": t(-30), "ends_at": t(10)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (s, other) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-ext-next", "name": "Next", "vm_specs": [
                crate::common::lab::spec("linux", &lab.template, 192)]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    let oid = other["id"].as_str().unwrap();
    let (s, next) = teacher
        .post(
            &format!("/api/courses/{oid}/sessions"),
            json!({"starts_at": t(20), "ends_at": t(80)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{next}");
    let (_, status) = lab.alice.get(&format!("/api/vms/{}/class", lab.vm)).await;
    assert_eq!(status["can_extend"], true, "{status}");
    assert_eq!(status["warning_minutes"], 15, "{status}");
    let got = lab.alice.post_empty(&extend).await;
    assert_error(&got, StatusCode::CONFLICT, "extension_node_needed");

    // The other class moves away: granted, once.
    let (s, _) = teacher
        .delete(&format!(
            "/api/courses/{oid}/sessions/{}",
            next["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, status) = lab.alice.post_empty(&extend).await;
    assert_eq!(s, StatusCode::OK, "{status}");
    let until = time::OffsetDateTime::parse(
        status["extended_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let end = now + time::Duration::minutes(10);
    assert!(
        (until - (end + time::Duration::minutes(15))).abs() <= time::Duration::seconds(1),
        "{status}"
    );
    assert_eq!(status["can_extend"], false, "{status}");
    let got = lab.alice.post_empty(&extend).await;
    assert_error(&got, StatusCode::CONFLICT, "extension_already");
    // Bob (same course) and the teacher see nothing of Alice's extension
    // beyond what they may: Bob cannot even reach her VM.
    let bob = env.client("test-bob").await;
    assert_error(
        &bob.post_empty(&extend).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
