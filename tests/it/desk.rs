//! The service desk (issue 13), black-box: the `staff` role and its reach,
//! the role matrix of the desk's routes, a ticket's whole life with its
//! timeline and internal notes, bad input, and — on a real running VM —
//! the context and the screenshot a report captures.

use std::time::Duration;

use crate::common::{self, TestEnv, assert_error, lab, wait_for};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

struct Desk {
    env: TestEnv,
    anon: common::Client,
    student: common::Client,
    other: common::Client,
    teacher: common::Client,
    staff: common::Client,
    staff2: common::Client,
    admin: common::Client,
    ids: std::collections::HashMap<&'static str, String>,
}

impl Desk {
    /// The teacher's course `code` on the tiny guest imported as `template`
    /// (one spec `linux`, 128 MiB), with `students` enrolled.
    async fn course(&self, template: &str, code: &str, name: &str, students: &[&str]) -> Value {
        let tpl = lab::import_tiny(&self.teacher, template).await;
        let body = json!({"code": code, "name": name, "vm_specs": [lab::spec("linux", &tpl, 128)]});
        lab::course(&self.teacher, body, students).await
    }
}

async fn desk() -> Desk {
    let env = TestEnv::start().await;
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [
        ("test-d-student", Role::Student),
        ("test-d-other", Role::Student),
        ("test-d-teacher", Role::Teacher),
        ("test-d-staff", Role::Staff),
        ("test-d-staff2", Role::Staff),
        ("test-d-admin", Role::Admin),
    ] {
        let u = env.user(name, role).await;
        ids.insert(name, u["id"].as_str().unwrap().to_owned());
    }
    Desk {
        anon: common::Client::anonymous(&env.server.url()),
        student: env.client("test-d-student").await,
        other: env.client("test-d-other").await,
        teacher: env.client("test-d-teacher").await,
        staff: env.client("test-d-staff").await,
        staff2: env.client("test-d-staff2").await,
        admin: env.client("test-d-admin").await,
        env,
        ids,
    }
}

fn kinds(view: &Value) -> Vec<&str> {
    view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn staff_role_reaches_the_desk_and_nodes_but_not_user_management() {
    let d = desk().await;
    // The role is stored, listed and accepted by POST /api/users.
    let (s, me) = d.staff.get("/api/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["role"], "staff", "{me}");
    let (s, made) = d
        .admin
        .post(
            "/api/users",
            json!({"username":"test-d-staff3","password":"long-enough-1","role":"staff"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["role"], "staff");

    // Every desk route is in the OpenAPI document.
    let (_, doc) = d.anon.get("/api/openapi.json").await;
    for p in [
        "/api/tickets",
        "/api/tickets/{id}",
        "/api/tickets/{id}/assign",
        "/api/tickets/{id}/state",
        "/api/tickets/{id}/priority",
        "/api/tickets/{id}/comments",
        "/api/tickets/{id}/resolve",
        "/api/tickets/{id}/confirm",
        "/api/tickets/{id}/reopen",
        "/api/tickets/{id}/screenshot",
        "/api/tickets/{id}/callbacks",
        "/api/desk/screenshots",
        "/api/desk/screenshots/{id}",
        "/api/desk/members",
        "/api/desk/stats",
        "/api/problems",
        "/api/problems/{id}",
        "/api/problems/{id}/tickets",
        "/api/problems/{id}/resolve",
        "/api/kb",
        "/api/kb/{id}",
        "/api/kb/{id}/helped",
        "/api/kb/{id}/revisions",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi.json lacks {p}");
    }
}

#[tokio::test]
async fn a_ticket_lives_from_report_to_rating_with_its_whole_timeline() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    let staff2_id = d.ids["test-d-staff2"].clone();

    let title = "<script>alert(1)</script> my VM is slow";
    let (s, t) = d
        .student
        .post(
            "/api/tickets",
            json!({"kind":"incident","title":title,"description":"line one\nline two","urgency":"not_blocking"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["title"], title, "stored as typed");
    assert_eq!(t["state"], "new");
    assert_eq!(t["impact"], "user");
    assert_eq!(t["priority"], "P4", "one user, not blocking");
    // SLA clocks from the engine: due times and no breach yet.
    assert!(t["response_due"].is_string(), "{t}");
    assert!(t["resolution_due"].is_string(), "{t}");
    assert_eq!(t["sla_breached"]["response"], false, "{t}");
    assert_eq!(t["channel"], "web");
    assert_eq!(t["reporter_name"], "test-d-student");
    assert_eq!(kinds(&t), ["created"]);
    assert_eq!(t["can"]["confirm"], false);
    assert_eq!(t["can"]["internal"], false);

    // Who sees it: the reporter, staff, admins; not another student or an
    // unrelated teacher.
    assert_eq!(
        d.other.get(&format!("/api/tickets/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        d.teacher.get(&format!("/api/tickets/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, mine) = d.other.get("/api/tickets").await;
    assert_eq!(mine.as_array().unwrap().len(), 0, "{mine}");
    let (_, queue) = d.staff.get("/api/tickets?open=true&assignee_id=none").await;
    assert_eq!(common::strings(&queue, "id"), [id.as_str()]);

    // Only the desk works it; staff take it themselves, only admins dispatch.
    let path = |p: &str| format!("/api/tickets/{id}{p}");
    let got = d
        .student
        .post(&path("/assign"), json!({"assignee_id": staff_id}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = d
        .staff
        .post(&path("/assign"), json!({"assignee_id": staff2_id}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = d
        .admin
        .post(
            &path("/assign"),
            json!({"assignee_id": d.ids["test-d-student"]}),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unacceptable");
    let got = d
        .staff
        .post(&path("/resolve"), json!({"resolution":"x"}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let (s, t) = d
        .staff
        .post(&path("/assign"), json!({"assignee_id": staff_id}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "assigned");
    assert_eq!(t["assignee_name"], "test-d-staff");
    assert!(t["responded_at"].is_string(), "{t}");
    // Another staff member cannot work someone else's ticket.
    let got = d
        .staff2
        .post(&path("/state"), json!({"state":"in_progress"}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let (s, t) = d
        .staff
        .post(&path("/state"), json!({"state":"in_progress"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "in_progress");

    // Priority override needs a reason, and is in the timeline.
    let got = d
        .staff
        .post(&path("/priority"), json!({"priority":"P2","reason":"  "}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let (s, t) = d
        .staff
        .post(
            &path("/priority"),
            json!({"priority":"P2","reason":"whole row of PCs"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["priority"], "P2");

    // An internal note and a work-log line; students cannot write either.
    let got = d
        .student
        .post(&path("/comments"), json!({"text":"x","internal":true}))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = d
        .staff
        .post(
            &path("/comments"),
            json!({"text":"secret: node 3 flaky","internal":true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = d
        .staff
        .post(
            &path("/comments"),
            json!({"text":"restarted the VM","worklog":true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Waiting for the reporter; the reporter's reply brings it back.
    let (_, t) = d
        .staff
        .post(
            &path("/state"),
            json!({"state":"waiting","text":"does it still happen?"}),
        )
        .await;
    assert_eq!(t["state"], "waiting", "{t}");
    let (s, t) = d
        .student
        .post(&path("/comments"), json!({"text":"yes, still slow"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "in_progress");
    let student_view = kinds(&t);
    assert!(
        !t.to_string().contains("secret: node 3"),
        "internal note leaked: {t}"
    );
    assert_eq!(
        student_view,
        [
            "created", "assigned", "state", "priority", "worklog", "state", "comment"
        ]
    );

    // Resolve; the reporter confirms with a rating (not before, not twice).
    let got = d.student.post(&path("/confirm"), json!({"rating":5})).await;
    assert_error(&got, StatusCode::CONFLICT, "ticket_state");
    let (s, t) = d
        .staff
        .post(
            &path("/resolve"),
            json!({"resolution":"moved it to a quieter node"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "resolved");
    // Reopen once (counts against first-time fix), resolve again.
    let got = d.staff.post(&path("/reopen"), json!({"reason":"x"})).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let (_, t) = d
        .student
        .post(&path("/reopen"), json!({"reason":"slow again"}))
        .await;
    assert_eq!(t["state"], "assigned", "back to its assignee: {t}");
    assert_eq!(t["reopen_count"], 1);
    let (_, t) = d
        .staff
        .post(&path("/resolve"), json!({"resolution":"replaced the disk"}))
        .await;
    assert_eq!(t["state"], "resolved");
    for bad in [json!({"rating":0}), json!({"rating":6})] {
        let got = d.student.post(&path("/confirm"), bad).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    let got = d.staff.post(&path("/confirm"), json!({"rating":5})).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let (s, t) = d
        .student
        .post(
            &path("/confirm"),
            json!({"rating":4,"comment":"quick, thanks"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "closed");
    assert_eq!(t["rating"], 4);
    assert_eq!(t["rating_comment"], "quick, thanks");
    assert!(t["closed_at"].is_string());
    let got = d
        .student
        .post(&path("/comments"), json!({"text":"one more thing"}))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "ticket_state");

    // Staff see the whole timeline, internal note included, with who and when.
    let (_, full) = d.staff.get(&path("")).await;
    let notes: Vec<&Value> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["internal"] == true)
        .collect();
    assert_eq!(notes.len(), 1, "{full}");
    assert_eq!(notes[0]["text"], "secret: node 3 flaky");
    assert_eq!(notes[0]["actor_name"], "test-d-staff");
    assert!(
        full["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at"].is_string())
    );
    // Filters.
    let (_, closed) = d.admin.get("/api/tickets?state=closed").await;
    assert_eq!(closed.as_array().unwrap().len(), 1);
    let (_, open) = d.admin.get("/api/tickets?open=true").await;
    assert_eq!(open.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn reports_on_behalf_and_bad_input_get_clear_4xx() {
    let d = desk().await;
    let path = "/api/tickets";
    // Text bounds and shapes.
    let long = "x".repeat(201);
    for (body, code, status) in [
        (json!({"kind":"incident","title":"  "}), "bad_request", 400),
        (json!({"kind":"incident","title":long}), "bad_request", 400),
        (
            json!({"kind":"incident","title":"a\u{7}b"}),
            "bad_request",
            400,
        ),
        (
            json!({"kind":"incident","title":"ok","description":"y".repeat(10_001)}),
            "bad_request",
            400,
        ),
        (json!({"kind":"outage","title":"ok"}), "bad_request", 400),
        (
            json!({"kind":"incident","title":"ok","urgency":"panic"}),
            "bad_request",
            400,
        ),
        (
            json!({"kind":"incident","title":"ok","surprise":1}),
            "bad_request",
            400,
        ),
        (
            json!({"kind":"incident","title":"ok","vm_id":"00000000-0000-0000-0000-000000000000"}),
            "unacceptable",
            422,
        ),
        (
            json!({"kind":"incident","title":"ok","channel":"phone","on_behalf_of":"test-d-other"}),
            "forbidden",
            403,
        ),
        (
            json!({"kind":"incident","title":"ok","channel":"system"}),
            "bad_request",
            400,
        ),
    ] {
        let got = d.student.post(path, body.clone()).await;
        assert_error(&got, StatusCode::from_u16(status).unwrap(), code);
    }
    for q in [
        "?state=bogus",
        "?limit=0",
        "?limit=501",
        "?assignee_id=nobody",
        "?x=1",
    ] {
        let got = d.staff.get(&format!("{path}{q}")).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Staff enter a phone report for a student: the student is its reporter
    // and sees it; an unknown user is 422.
    let got = d
        .staff
        .post(path, json!({"kind":"request","title":"more disk","channel":"phone","on_behalf_of":"test-d-ghost"}))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unacceptable");
    let got = d
        .staff
        .post(
            path,
            json!({"kind":"request","title":"more disk","channel":"phone"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let (s, t) = d
        .staff
        .post(path, json!({"kind":"complaint","title":"rude answer","channel":"walk_in","on_behalf_of":"test-d-other"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["channel"], "walk_in");
    assert_eq!(t["kind"], "complaint");
    assert_eq!(t["reporter_id"], d.ids["test-d-other"].as_str());
    assert_eq!(t["created_by"], d.ids["test-d-staff"].as_str());
    let (_, theirs) = d.other.get("/api/tickets").await;
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    let _ = &d.env;
}

#[tokio::test]
async fn a_report_from_a_running_vm_carries_its_context_and_screen() {
    let d = desk().await;
    let course = d
        .course(
            "test-d-tiny",
            "test-d101",
            "Desk course",
            &["test-d-student"],
        )
        .await;
    let cid = course["id"].as_str().unwrap();
    let (_, vms) = d.student.get("/api/vms").await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    d.env.track_vm(&vm_id);

    // Staff do not reach a VM no open ticket names.
    assert_eq!(
        d.staff.get(&format!("/api/vms/{vm_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    // A stopped VM has no screen to capture.
    let got = d
        .student
        .post("/api/desk/screenshots", json!({"vm_id": vm_id}))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "vm_not_running");
    // Another student cannot capture this VM's screen.
    let got = d
        .other
        .post("/api/desk/screenshots", json!({"vm_id": vm_id}))
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");

    let (s, vm) = d
        .student
        .post_empty(&format!("/api/vms/{vm_id}/start"))
        .await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    common::wait_serial(&d.env, &vm_id, "BOOT-OK", BOOT_TIMEOUT).await;

    // The reporter takes a screenshot, previews it, drops it, takes another.
    let (s, shot) = d
        .student
        .post("/api/desk/screenshots", json!({"vm_id": vm_id}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{shot}");
    let shot_id = shot["id"].as_str().unwrap().to_owned();
    let (s, headers, png) =
        common::get_bytes(&d.student, &format!("/api/desk/screenshots/{shot_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(png.len() as u64, shot["bytes"].as_u64().unwrap());
    // The stored file is named by its SHA-256, under the data dir.
    let stored = d
        .env
        .data_dir()
        .join("desk/screenshots")
        .join(format!("{}.png", shot["sha256"].as_str().unwrap()));
    assert_eq!(std::fs::read(&stored).unwrap(), png);
    let (s, _, _) = common::get_bytes(&d.other, &format!("/api/desk/screenshots/{shot_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "someone else's screenshot");
    let (s, _) = d
        .student
        .delete(&format!("/api/desk/screenshots/{shot_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, kept) = d
        .student
        .post("/api/desk/screenshots", json!({"vm_id": vm_id}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{kept}");

    // The report: the VM's context as it was, the screenshot kept.
    let (s, t) = d
        .student
        .post(
            "/api/tickets",
            json!({"kind":"incident","title":"screen froze","vm_id":vm_id,
                   "urgency":"in_session","screenshot_id":kept["id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["vm_id"], vm_id.as_str());
    assert_eq!(t["course_id"], cid);
    assert_eq!(t["template_id"], course["vm_specs"][0]["template_id"]);
    assert!(t["node_id"].is_string(), "{t}");
    assert_eq!(t["context"]["vm"]["state"], "running", "{t}");
    assert_eq!(t["context"]["node"]["name"], "local", "{t}");
    assert_eq!(t["context"]["template"]["name"], "test-d-tiny");
    assert_eq!(t["context"]["course"]["code"], "test-d101");
    assert_eq!(t["context"]["users_affected"], 1);
    assert_eq!(t["priority"], "P2", "one user, class in session");
    assert_eq!(t["has_screenshot"], true);
    let (s, _, png2) =
        common::get_bytes(&d.student, &format!("/api/tickets/{tid}/screenshot")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(png2.starts_with(b"\x89PNG"));
    // A screenshot already sent cannot be sent or dropped again.
    let got = d
        .student
        .delete(&format!(
            "/api/desk/screenshots/{}",
            kept["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);

    // Staff now reach the VM named in the open ticket: read, power, console,
    // but not the student's data (reset, snapshots, export).
    let (s, seen) = d.staff.get(&format!("/api/vms/{vm_id}")).await;
    assert_eq!(s, StatusCode::OK, "{seen}");
    let (_, listed) = d.staff.get("/api/vms").await;
    assert_eq!(common::strings(&listed, "id"), [vm_id.as_str()]);
    let (s, _, _) = common::get_bytes(&d.staff, &format!("/api/tickets/{tid}/screenshot")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, console) = d
        .staff
        .post_empty(&format!("/api/vms/{vm_id}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{console}");
    let got = d.staff.get(&format!("/api/vms/{vm_id}/snapshots")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    let (s, off) = d
        .staff
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{off}");
    let vm = wait_for("the VM to stop", Duration::from_secs(30), || async {
        let (_, v) = d.staff.get(&format!("/api/vms/{vm_id}")).await;
        (v["state"] == "stopped").then_some(v)
    })
    .await;
    assert_eq!(vm["state"], "stopped");
    let got = d.staff.post_empty(&format!("/api/vms/{vm_id}/reset")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    // Once the ticket is closed the VM is out of staff's reach again.
    let staff_id = d.ids["test-d-staff"].clone();
    d.staff
        .post(
            &format!("/api/tickets/{tid}/assign"),
            json!({"assignee_id": staff_id}),
        )
        .await;
    d.staff
        .post(
            &format!("/api/tickets/{tid}/resolve"),
            json!({"resolution":"rebooted"}),
        )
        .await;
    assert_eq!(
        d.staff.get(&format!("/api/vms/{vm_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    // The course's teacher sees their student's ticket.
    let (s, _) = d.teacher.get(&format!("/api/tickets/{tid}")).await;
    assert_eq!(s, StatusCode::OK);
}

/// Resolve a fresh ticket of `reporter` as `staff` (whose id is `staff_id`).
async fn resolved_ticket(
    reporter: &common::Client,
    staff: &common::Client,
    staff_id: &str,
    title: &str,
) -> String {
    let (s, t) = reporter
        .post("/api/tickets", json!({"kind":"incident","title":title}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let (s, _) = staff
        .post(
            &format!("/api/tickets/{id}/assign"),
            json!({"assignee_id": staff_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = staff
        .post(
            &format!("/api/tickets/{id}/resolve"),
            json!({"resolution":"done"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    id
}

/// The desk's figures are read from counters the database keeps as tickets
/// change (migration 0038): after every kind of change, through the API and
/// by hand, they equal the figures over counters rebuilt from scratch, and
/// the counts and percentiles a plain query over the tickets gives.
#[tokio::test]
async fn the_desk_stats_after_ticket_changes_equal_the_stats_from_scratch() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    let staff2_id = d.ids["test-d-staff2"].clone();
    let mut ids = Vec::new();
    for i in 0..6 {
        let reporter = if i % 2 == 0 { &d.student } else { &d.other };
        let (staff, sid) = if i % 3 == 0 {
            (&d.staff2, &staff2_id)
        } else {
            (&d.staff, &staff_id)
        };
        ids.push(resolved_ticket(reporter, staff, sid, &format!("stats {i}")).await);
    }
    let (s, _) = d
        .student
        .post(
            &format!("/api/tickets/{}/confirm", ids[0]),
            json!({"rating":5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = d
        .other
        .post(
            &format!("/api/tickets/{}/reopen", ids[1]),
            json!({"reason":"again"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = d
        .student
        .post("/api/tickets", json!({"kind":"complaint","title":"slow"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    ids.push(t["id"].as_str().unwrap().to_owned());
    // Spread the tickets over weeks, days, hours and seconds (a ticket's
    // creation and clocks move together), so a range reads every level
    // of the counters and its edges.
    let pool = &d.env.server.state.pool;
    for (i, id) in ids.iter().enumerate() {
        let back = -(i as i64 * (9 * 86_400 + 3_671) + 17);
        let (created, responded, resolved): (String, Option<String>, Option<String>) =
            sqlx::query_as(
                "SELECT created_at, responded_at, resolved_at FROM tickets WHERE id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        let resp = 30 + 97 * i as i64;
        let res = 600 + 7_919 * i as i64;
        sqlx::query(
            "UPDATE tickets SET created_at = $1, responded_at = $2, resolved_at = $3 WHERE id = $4",
        )
        .bind(shifted(&created, back))
        .bind(responded.map(|r| shifted(&r, back + resp)))
        .bind(resolved.map(|r| shifted(&r, back + res)))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }
    let now = time::OffsetDateTime::now_utc();
    let text = |t: time::OffsetDateTime| pvce::db::format_time(t).replace('+', "%2B");
    // Fixed bounds: the figures are compared again later.
    let end = text(now + time::Duration::seconds(5));
    let queries = [
        format!("?to={end}&group_by=day"),
        format!(
            "?from={}&to={end}&group_by=week",
            text(now - time::Duration::days(70))
        ),
        format!(
            "?from={}&to={}&group_by=month",
            text(now - time::Duration::seconds(50 * 86_400 + 4_321)),
            text(now - time::Duration::seconds(86_400 + 77))
        ),
        format!(
            "?from={}&to={end}",
            text(now - time::Duration::seconds(19 * 86_400))
        ),
    ];
    let mut before = Vec::new();
    for q in &queries {
        let (s, st) = d.staff.get(&format!("/api/desk/stats{q}")).await;
        assert_eq!(s, StatusCode::OK, "{st}");
        before.push(st);
    }
    // A plain count over the tickets of each range.
    for st in &before {
        let (from, to) = (st["from"].as_str().unwrap(), st["to"].as_str().unwrap());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tickets WHERE created_at >= $1 AND created_at < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(st["total"], total, "{st}");
        assert!((1..=7).contains(&total), "{st}");
        let series: i64 = st["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["created"].as_i64().unwrap())
            .sum();
        assert_eq!(series, total, "{st}");
        let resolved: Vec<f64> = sqlx::query_scalar(
            "SELECT (julianday(resolved_at) - julianday(created_at)) * 86400.0 AS s FROM tickets
             WHERE created_at >= $1 AND created_at < $2 AND resolved_at IS NOT NULL ORDER BY s",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(st["resolution"]["count"], resolved.len(), "{st}");
        let rank =
            |p: f64| pvce::desk::stats::nearest_rank(resolved.len(), p).map(|r| resolved[r - 1]);
        // Both sides are julianday differences, taken in another order
        // (the rollup's per-ticket seconds, the plain query's): equal to
        // well under a millisecond, not always to the last bit.
        let close = |got: Option<f64>, want: Option<f64>| match (got, want) {
            (Some(g), Some(w)) => (g - w).abs() < 1e-3,
            (g, w) => g == w,
        };
        for (key, p) in [("p50_seconds", 50.0), ("p90_seconds", 90.0)] {
            assert!(
                close(st["resolution"][key].as_f64(), rank(p)),
                "{key}: {:?} vs {:?}: {st}",
                st["resolution"][key].as_f64(),
                rank(p)
            );
        }
    }
    // The counters rebuilt from scratch give the very same figures.
    for sql in [
        "DELETE FROM desk_stats_rollup",
        "DELETE FROM ticket_clock_facts",
        "INSERT INTO ticket_clock_facts SELECT * FROM ticket_clock_times",
        "INSERT INTO desk_stats_rollup (span, start, key, n)
         SELECT span, start, key, COUNT(*) FROM ticket_stat_rows GROUP BY 1, 2, 3",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    for (q, want) in queries.iter().zip(&before) {
        let (_, st) = d.staff.get(&format!("/api/desk/stats{q}")).await;
        assert_eq!(&st, want, "{q}");
    }
}

#[tokio::test]
async fn unanswered_resolved_tickets_close_unrated_and_staff_record_callbacks() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    let quiet = resolved_ticket(&d.student, &d.staff, &staff_id, "nobody answers").await;
    let called = resolved_ticket(&d.student, &d.staff, &staff_id, "phone me").await;

    // The desk's pass with the time the test chooses: not yet after 6 days,
    // closed unrated after the default 7, with a line by the server.
    let desk = d.env.server.state.desk.clone();
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        desk.close_unconfirmed(now + time::Duration::days(6))
            .await
            .unwrap(),
        0
    );
    let (_, t) = d.student.get(&format!("/api/tickets/{quiet}")).await;
    assert_eq!(t["state"], "resolved");

    // A callback: first nobody answers, then the reporter rates on the phone.
    let path = format!("/api/tickets/{called}/callbacks");
    let got = d.student.post(&path, json!({"outcome":"reached"})).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    for bad in [
        json!({"outcome":"no_answer","rating":5}),
        json!({"outcome":"reached","rating":9}),
        json!({"outcome":"busy"}),
        json!({"outcome":"reached","at":"yesterday"}),
        json!({"outcome":"reached","at":"2999-01-01T00:00:00Z"}),
    ] {
        let got = d.staff.post(&path, bad.clone()).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (s, t) = d
        .staff
        .post(
            &path,
            json!({"outcome":"no_answer","at":"2020-01-02T03:04:05Z","text":"line busy"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "resolved");
    let (s, t) = d
        .staff
        .post(
            &path,
            json!({"outcome":"reached","rating":3,"text":"works, but slow to start"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "closed");
    assert_eq!(t["rating"], 3);
    let calls: Vec<&Value> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "callback")
        .collect();
    assert_eq!(calls.len(), 2, "{t}");
    assert_eq!(calls[0]["data"]["outcome"], "no_answer");
    assert_eq!(calls[0]["data"]["at"], "2020-01-02T03:04:05Z");
    assert_eq!(calls[0]["actor_name"], "test-d-staff");
    assert_eq!(calls[1]["data"]["rating"], 3);
    // The reporter sees the callbacks in their timeline too.
    let (_, mine) = d.student.get(&format!("/api/tickets/{called}")).await;
    assert!(kinds(&mine).contains(&"callback"), "{mine}");
    // A closed ticket takes no phone rating any more.
    let got = d
        .staff
        .post(&path, json!({"outcome":"reached","rating":5}))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "ticket_state");

    assert_eq!(
        desk.close_unconfirmed(now + time::Duration::days(8))
            .await
            .unwrap(),
        1
    );
    let (_, t) = d.student.get(&format!("/api/tickets/{quiet}")).await;
    assert_eq!(t["state"], "closed", "{t}");
    assert!(t["rating"].is_null(), "closed unrated: {t}");
    assert!(t["closed_at"].is_string());
    let last = t["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "auto_closed");
    assert!(last["actor_id"].is_null(), "{last}");
    // A second pass has nothing left to do.
    assert_eq!(
        desk.close_unconfirmed(now + time::Duration::days(9))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_knowledge_base_finds_chinese_and_english_and_counts_deflections() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    let ticket = resolved_ticket(&d.student, &d.staff, &staff_id, "虚拟机黑屏").await;
    let (s, zh) = d
        .staff
        .post(
            "/api/kb",
            json!({"title":"虚拟机启动后黑屏","symptom":"打开桌面后屏幕一片黑，键盘没有反应。",
                   "cause":"显示服务卡住了。","fix":"在虚拟机卡片上点“重启”，等半分钟再打开桌面。",
                   "lang":"zh-CN","ticket_id":ticket}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{zh}");
    assert_eq!(zh["ticket_id"], ticket.as_str());
    assert_eq!(zh["author_name"], "test-d-staff");
    let (s, en) = d
        .admin
        .post(
            "/api/kb",
            json!({"title":"The VM will not start: no node has room","symptom":"Start fails with no_capacity.",
                   "fix":"Shut down VMs you are not using, or ask the lab staff to add a node.","lang":"en"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{en}");
    // Students read but do not write; bad input is 4xx.
    let got = d
        .student
        .post(
            "/api/kb",
            json!({"title":"x","symptom":"s","fix":"f","lang":"en"}),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    for bad in [
        json!({"title":"x","symptom":" ","fix":"f","lang":"en"}),
        json!({"title":"x","symptom":"s","fix":"f","lang":"fr"}),
    ] {
        let got = d.staff.post("/api/kb", bad).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    let got = d
        .staff
        .post(
            "/api/kb",
            json!({"title":"x","symptom":"s","fix":"f","lang":"en","ticket_id":"00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unacceptable");

    // Chinese text without word boundaries finds the Chinese article…
    let search = |q: &str| format!("/api/kb?q={}", urlencode(q));
    let (_, hits) = d.student.get(&search("我的虚拟机一直黑屏怎么办")).await;
    assert_eq!(
        common::strings(&hits, "id")[0],
        zh["id"].as_str().unwrap(),
        "{hits}"
    );
    // …English words the English one; syntax in the text is just text.
    let (_, hits) = d
        .student
        .get(&search("my vm won't START (no_capacity) OR NOT"))
        .await;
    assert_eq!(
        common::strings(&hits, "id"),
        [en["id"].as_str().unwrap()],
        "{hits}"
    );
    let (_, none) = d.student.get(&search("ok")).await;
    assert_eq!(
        none.as_array().unwrap().len(),
        0,
        "too short to search: {none}"
    );
    let (_, zh_only) = d.student.get("/api/kb?lang=zh-CN").await;
    assert_eq!(
        common::strings(&zh_only, "id"),
        [zh["id"].as_str().unwrap()]
    );
    for q in ["?limit=0", "?limit=51", "?lang=fr", "?surprise=1"] {
        let got = d.student.get(&format!("/api/kb{q}")).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }

    // Deflection: it helped a student, so no report.
    let id = zh["id"].as_str().unwrap();
    let (s, a) = d
        .student
        .post(&format!("/api/kb/{id}/helped"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["helped"], 1);
    let (_, a) = d.other.get(&format!("/api/kb/{id}")).await;
    assert_eq!(a["helped"], 1);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn incident(c: &common::Client, title: &str) -> String {
    let (s, t) = c
        .post("/api/tickets", json!({"kind":"incident","title":title}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn resolving_a_problem_resolves_its_open_incidents() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    let a = incident(&d.student, "node 2 VMs freeze").await;
    let b = incident(&d.other, "my VM froze too").await;
    let untaken = incident(&d.other, "frozen again").await;
    for t in [&a, &b] {
        let (s, _) = d
            .staff
            .post(
                &format!("/api/tickets/{t}/assign"),
                json!({"assignee_id": staff_id}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, p) = d
        .staff
        .post(
            "/api/problems",
            json!({"title":"Node 2 runs out of memory","root_cause":"a leaking monitor agent",
                   "workaround":"restart the agent","ticket_id":a}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["state"], "known_error");
    let pid = p["id"].as_str().unwrap().to_owned();
    for t in [&b, &untaken] {
        let (s, p) = d
            .staff
            .post(
                &format!("/api/problems/{pid}/tickets"),
                json!({"ticket_id": t}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
    }
    let got = d
        .staff
        .post(
            &format!("/api/problems/{pid}/tickets"),
            json!({"ticket_id":"00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unacceptable");
    let (_, t) = d.other.get(&format!("/api/tickets/{b}")).await;
    assert_eq!(t["problem_id"], pid.as_str());
    assert!(kinds(&t).contains(&"problem"), "{t}");

    let (s, p) = d
        .staff
        .post(
            &format!("/api/problems/{pid}/resolve"),
            json!({"resolution":"agent replaced"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["state"], "resolved");
    for t in [&a, &b] {
        let (_, t) = d.admin.get(&format!("/api/tickets/{t}")).await;
        assert_eq!(t["state"], "resolved", "{t}");
        assert!(
            t["resolution"].as_str().unwrap().contains("agent replaced"),
            "{t}"
        );
    }
    // Nobody took this one: it stays in the queue with a work-log line.
    let (_, t) = d.admin.get(&format!("/api/tickets/{untaken}")).await;
    assert_eq!(t["state"], "new");
    assert_eq!(kinds(&t).last(), Some(&"worklog"), "{t}");
    let got = d
        .staff
        .post(
            &format!("/api/problems/{pid}/resolve"),
            json!({"resolution":"again"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "problem_resolved");
    let (_, list) = d.admin.get("/api/problems").await;
    assert_eq!(list[0]["tickets"].as_array().unwrap().len(), 3, "{list}");
}

#[tokio::test]
async fn the_desk_stats_count_kinds_times_rates_staff_and_satisfaction() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    // Two resolved (one reopened once), one rated 4 after confirmation, one
    // complaint left open.
    let a = resolved_ticket(&d.student, &d.staff, &staff_id, "first").await;
    let b = resolved_ticket(&d.other, &d.staff, &staff_id, "second").await;
    d.other
        .post(
            &format!("/api/tickets/{b}/reopen"),
            json!({"reason":"again"}),
        )
        .await;
    d.staff
        .post(
            &format!("/api/tickets/{b}/resolve"),
            json!({"resolution":"now"}),
        )
        .await;
    let (s, _) = d
        .student
        .post(&format!("/api/tickets/{a}/confirm"), json!({"rating":4}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = d
        .student
        .post("/api/tickets", json!({"kind":"complaint","title":"rude"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, st) = d.admin.get("/api/desk/stats?group_by=month").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["total"], 3, "{st}");
    assert_eq!(st["by_kind"]["incident"], 2);
    assert_eq!(st["by_kind"]["complaint"], 1);
    assert_eq!(st["complaints"], 1);
    assert_eq!(st["by_state"]["closed"], 1);
    assert_eq!(st["by_state"]["resolved"], 1);
    assert_eq!(st["by_channel"]["web"], 3);
    assert_eq!(st["first_time_fix_rate"], 0.5);
    assert_eq!(st["reopen_rate"], 0.5);
    assert_eq!(st["satisfaction"]["4"], 1);
    assert_eq!(st["satisfaction_average"], 4.0);
    assert_eq!(st["response"]["count"], 2);
    assert!(st["response"]["p50_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(st["resolution"]["count"], 2);
    assert_eq!(st["per_staff"][0]["name"], "test-d-staff");
    assert_eq!(st["per_staff"][0]["assigned"], 2);
    assert_eq!(st["per_staff"][0]["handling_rate"], 1.0);
    let series = st["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{st}");
    assert_eq!(series[0]["created"], 3);
    // Answered and resolved well within their targets: every finished clock met.
    assert_eq!(st["sla"]["response"]["met"], 2, "{st}");
    assert_eq!(st["sla"]["response"]["breached"], 0, "{st}");
    assert_eq!(st["sla"]["resolution"]["breached"], 0, "{st}");
    assert_eq!(st["sla_compliance"], 1.0, "{st}");
    // Times set by hand: responses after 60 s and 600 s, resolutions after
    // 1 h and 2 h. Nearest rank over two values: p50 the first, p90 the second.
    let pool = &d.env.server.state.pool;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tickets WHERE responded_at IS NOT NULL ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    for (id, (resp, res)) in ids.iter().zip([(600, 7200), (60, 3600)]) {
        let created: String = sqlx::query_scalar("SELECT created_at FROM tickets WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE tickets SET responded_at = $1, resolved_at = $2 WHERE id = $3")
            .bind(shifted(&created, resp))
            .bind(shifted(&created, res))
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
    }
    let (_, st) = d.admin.get("/api/desk/stats").await;
    let secs = |clock: &str, p: &str| st[clock][p].as_f64().map(f64::round);
    assert_eq!(secs("response", "p50_seconds"), Some(60.0), "{st}");
    assert_eq!(secs("response", "p90_seconds"), Some(600.0), "{st}");
    assert_eq!(secs("resolution", "p50_seconds"), Some(3600.0), "{st}");
    assert_eq!(secs("resolution", "p90_seconds"), Some(7200.0), "{st}");
    // An empty window, and bad bounds.
    let (_, empty) = d
        .staff
        .get("/api/desk/stats?from=2020-01-01&to=2020-02-01")
        .await;
    assert_eq!(empty["total"], 0);
    assert!(empty["first_time_fix_rate"].is_null());
    assert!(empty["sla_compliance"].is_null(), "{empty}");
    for q in ["?from=March", "?to=", "?group_by=year", "?x=1"] {
        let got = d.staff.get(&format!("/api/desk/stats{q}")).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Well-formed bounds that make no range: unacceptable (API.md).
    let got = d
        .staff
        .get("/api/desk/stats?from=2026-02-01&to=2026-01-01")
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_range");
}

/// A node the server cannot reach, stored as up (as if it had just
/// answered), so the next probe marks it down.
async fn unreachable_node(env: &TestEnv, name: &str, port: u16) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO nodes (id, name, uri, console_address, state, created_at)
         VALUES ($1, $2, $3, '127.0.0.1', 'up', '2024-01-01T00:00:00Z')",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(format!("qemu+tls://127.0.0.1:{port}/system"))
    .execute(&env.server.state.pool)
    .await
    .unwrap();
    id
}

async fn system_tickets(d: &Desk, node: uuid::Uuid) -> Vec<Value> {
    let (s, list) = d.staff.get(&format!("/api/tickets?node_id={node}")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["channel"] == "system")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_node_down_with_vms_opens_one_system_incident_and_its_return_is_logged() {
    let d = desk().await;
    let course = d
        .course(
            "test-d-sys",
            "test-dsys",
            "Desk system",
            &["test-d-student", "test-d-other"],
        )
        .await;
    let cid = course["id"].as_str().unwrap();
    let nodes = &d.env.server.state.nodes;
    let pool = &d.env.server.state.pool;

    // A node with nobody's VM on it goes down: nothing to report.
    let empty = unreachable_node(&d.env, "test-d-empty", 1).await;
    assert!(nodes.probe(empty).await.is_err());
    let (_, events) = d.admin.get(&format!("/api/events?node_id={empty}")).await;
    assert_eq!(events[0]["kind"], "node_down", "{events}");

    // Both students' VMs run on a node that stops answering.
    let node = unreachable_node(&d.env, "test-d-node", 2).await;
    sqlx::query("UPDATE vms SET node_id = $1, state = 'running' WHERE course_id = $2")
        .bind(node.to_string())
        .bind(cid)
        .execute(pool)
        .await
        .unwrap();
    assert!(nodes.probe(node).await.is_err());
    let t = wait_for("the system incident", Duration::from_secs(10), || async {
        system_tickets(&d, node).await.into_iter().next()
    })
    .await;
    assert_eq!(t["kind"], "incident", "{t}");
    assert_eq!(t["state"], "new", "{t}");
    assert_eq!(t["context"]["users_affected"], 2, "{t}");
    assert_eq!(
        t["context"]["users"],
        json!(["test-d-other", "test-d-student"]),
        "{t}"
    );
    let title = t["title"].as_str().unwrap();
    assert!(title.contains("test-d-node"), "{title}");
    // The UI words the title in the reader's language from these.
    assert_eq!(t["context"]["system"]["kind"], "node_down", "{t}");
    assert_eq!(t["context"]["system"]["node"], "test-d-node", "{t}");
    // The node_down entry of the event log is linked.
    let (_, events) = d.admin.get(&format!("/api/events?node_id={node}")).await;
    assert_eq!(events[0]["kind"], "node_down", "{events}");
    assert_eq!(t["context"]["event_ids"], json!([events[0]["id"]]), "{t}");
    assert!(system_tickets(&d, empty).await.is_empty());
    let id = t["id"].as_str().unwrap();
    let worklogs = |n: usize| {
        let d = &d;
        async move {
            wait_for(
                &format!("{n} work-log lines"),
                Duration::from_secs(10),
                || async {
                    let (_, v) = d.staff.get(&format!("/api/tickets/{id}")).await;
                    (kinds(&v).iter().filter(|k| **k == "worklog").count() == n).then_some(v)
                },
            )
            .await
        }
    };

    // Down again (as if it had answered in between): the same incident
    // gets a work-log line.
    sqlx::query("UPDATE nodes SET state = 'up' WHERE id = $1")
        .bind(node.to_string())
        .execute(pool)
        .await
        .unwrap();
    assert!(nodes.probe(node).await.is_err());
    worklogs(1).await;
    let all = system_tickets(&d, node).await;
    assert_eq!(all.len(), 1, "deduplicated: {all:?}");

    // It comes back (it is given the server's own libvirt, whose URI the
    // local node lends it): a work-log line, and the incident stays open
    // for staff to check and resolve. The VMs were never really there, so
    // they are stopped first: the reconciler has nothing of theirs to find.
    sqlx::query("UPDATE vms SET node_id = NULL, state = 'stopped' WHERE course_id = $1")
        .bind(cid)
        .execute(pool)
        .await
        .unwrap();
    let (local_id, local): (String, String) =
        sqlx::query_as("SELECT id, uri FROM nodes WHERE id NOT IN ($1, $2)")
            .bind(node.to_string())
            .bind(empty.to_string())
            .fetch_one(pool)
            .await
            .unwrap();
    let set_uri = |id: String, uri: String| async move {
        sqlx::query("UPDATE nodes SET uri = $1 WHERE id = $2")
            .bind(uri)
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
    };
    // The local node keeps its open connection meanwhile.
    set_uri(local_id.clone(), "qemu+tls://127.0.0.1:3/system".into()).await;
    set_uri(node.to_string(), local.clone()).await;
    nodes.probe(node).await.unwrap();
    let view = worklogs(2).await;
    assert_eq!(view["state"], "new", "annotated, not closed: {view}");
    set_uri(node.to_string(), "qemu+tls://127.0.0.1:2/system".into()).await;
    set_uri(local_id, local).await;
    assert_eq!(system_tickets(&d, node).await.len(), 1);

    // The first affected user (by name) is its reporter; every affected
    // user follows it, in their list too; a user not affected does not.
    let (s, mine) = d.other.get(&format!("/api/tickets/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["channel"], "system", "{mine}");
    assert_eq!(
        mine["reporter_id"],
        d.ids["test-d-other"].as_str(),
        "{mine}"
    );
    let (s, theirs) = d.student.get(&format!("/api/tickets/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{theirs}");
    // Not their classmates' names: those are the desk's.
    assert_eq!(theirs["context"]["users"], Value::Null, "{theirs}");
    assert_eq!(theirs["context"]["user_ids"], Value::Null, "{theirs}");
    assert_eq!(theirs["context"]["system"]["kind"], "node_down", "{theirs}");
    assert_eq!(mine["context"]["users"], Value::Null, "{mine}");
    assert_eq!(theirs["context"]["users_affected"], 2, "{theirs}");
    let (_, list) = d.student.get("/api/tickets").await;
    assert!(
        list.as_array().unwrap().iter().any(|t| t["id"] == id),
        "{list}"
    );
    d.env.user("test-d-bystander", Role::Student).await;
    let bystander = d.env.client("test-d-bystander").await;
    let (s, _) = bystander.get(&format!("/api/tickets/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = bystander.get("/api/tickets").await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn repeated_start_failures_of_a_vm_open_one_system_incident() {
    let d = desk().await;
    d.course(
        "test-d-fail",
        "test-dfail",
        "Desk failures",
        &["test-d-student"],
    )
    .await;
    let (_, vms) = d.student.get("/api/vms").await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    d.env.track_vm(&vm_id);
    // More vCPUs than QEMU accepts: libvirt refuses the domain every time.
    sqlx::query("UPDATE vms SET vcpus = 100000 WHERE id = $1")
        .bind(&vm_id)
        .execute(&d.env.server.state.pool)
        .await
        .unwrap();
    let start = || async {
        let (s, body) = d
            .student
            .post_empty(&format!("/api/vms/{vm_id}/start"))
            .await;
        assert!(!s.is_success(), "{s} {body}");
    };
    let system = || async {
        let (_, list) = d.staff.get(&format!("/api/tickets?vm_id={vm_id}")).await;
        list.as_array()
            .unwrap()
            .iter()
            .filter(|t| t["channel"] == "system")
            .cloned()
            .collect::<Vec<_>>()
    };
    let failures = || async {
        let (_, events) = d.admin.get("/api/events?limit=500").await;
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "vm_start_failed" && e["vm_id"] == vm_id.as_str())
            .count()
    };
    start().await;
    start().await;
    assert_eq!(failures().await, 2);
    // Two are not yet "repeated": the incident the third opens lists all
    // three failures (one opened at two would list two).
    start().await;
    let t = wait_for(
        "the VM's system incident",
        Duration::from_secs(10),
        || async { system().await.into_iter().next() },
    )
    .await;
    assert_eq!(t["kind"], "incident", "{t}");
    assert_eq!(t["reporter_id"], d.ids["test-d-student"].as_str(), "{t}");
    assert_eq!(
        t["context"]["event_ids"].as_array().unwrap().len(),
        3,
        "{t}"
    );
    let title = t["title"].as_str().unwrap();
    assert!(title.contains("3 times"), "{title}");
    assert_eq!(
        t["context"]["system"],
        json!({"kind": "start_failed", "vm": t["context"]["vm"]["name"], "count": 3}),
        "{t}"
    );

    // A fourth failure joins it with a work-log line.
    start().await;
    let id = t["id"].as_str().unwrap();
    wait_for(
        "the fourth failure's line",
        Duration::from_secs(10),
        || async {
            let (_, v) = d.staff.get(&format!("/api/tickets/{id}")).await;
            kinds(&v).contains(&"worklog").then_some(())
        },
    )
    .await;
    assert_eq!(system().await.len(), 1, "deduplicated");
    // The student follows the incident about their VM.
    let (s, _) = d.student.get(&format!("/api/tickets/{id}")).await;
    assert_eq!(s, StatusCode::OK);
}

/// A policy with the same targets for every priority, counted 7×24 (so
/// tests do not depend on the weekday or hour they run at).
fn flat_policy(response: u32, resolution: u32) -> Value {
    let t = json!({"response_minutes": response, "resolution_minutes": resolution, "around_the_clock": true});
    json!({"p1": t, "p2": t, "p3": t, "p4": t})
}

#[tokio::test]
async fn sla_settings_are_read_by_the_desk_and_changed_by_admins_only_valid() {
    use reqwest::Method;
    let d = desk().await;
    // Built-in defaults until an admin sets them.
    let (s, p) = d.staff.get("/api/desk/sla").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["p1"]["response_minutes"], 15);
    assert_eq!(p["p1"]["resolution_minutes"], 120);
    assert_eq!(p["p4"]["around_the_clock"], false);
    let (s, c) = d.staff.get("/api/desk/calendar").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["utc_offset"], "+08:00");
    assert_eq!(c["week"]["mon"], json!(["08:00-12:00", "13:30-17:30"]));
    assert_eq!(c["week"]["sun"], json!([]));
    assert_error(
        &d.student.get("/api/desk/sla").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let put = |c: &common::Client, path: &'static str, body: Value| {
        let c = c.clone();
        async move { c.send(Method::PUT, path, Some(body)).await }
    };

    // Staff read, only admins write.
    assert_error(
        &put(&d.staff, "/api/desk/sla", flat_policy(30, 60)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Well-formed but unacceptable: 422 with the reason.
    let got = put(&d.admin, "/api/desk/sla", flat_policy(90, 60)).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "sla_policy_invalid");
    assert!(
        got.1["message"].as_str().unwrap().contains("P1"),
        "{}",
        got.1
    );
    assert_error(
        &put(&d.admin, "/api/desk/sla", flat_policy(0, 60)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sla_policy_invalid",
    );
    assert_error(
        &put(&d.admin, "/api/desk/sla", flat_policy(10, 600_000)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sla_policy_invalid",
    );
    // Malformed: a priority missing, an unknown field, a negative number.
    let mut missing = flat_policy(30, 60);
    missing.as_object_mut().unwrap().remove("p4");
    for body in [
        missing,
        json!({"p1": {"response_minutes": 1, "resolution_minutes": 2, "colour": "red"}}),
        json!({"p1": {"response_minutes": -1, "resolution_minutes": 2}, "p2": {}, "p3": {}, "p4": {}}),
    ] {
        let got = put(&d.admin, "/api/desk/sla", body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (s, p) = put(&d.admin, "/api/desk/sla", flat_policy(30, 60)).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (_, p) = d.staff.get("/api/desk/sla").await;
    assert_eq!(p, flat_policy(30, 60));

    // The calendar: bad offsets, intervals, dates, overlaps, a calendar
    // never open — each a 422 naming the problem.
    for (body, says) in [
        (
            json!({"utc_offset": "+25:00", "week": {"mon": ["08:00-17:00"]}}),
            "utc_offset",
        ),
        (json!({"week": {"mon": ["17:00-08:00"]}}), "opening hours"),
        (
            json!({"week": {"mon": ["08:00-12:00", "11:00-13:00"]}}),
            "overlap",
        ),
        (
            json!({"week": {"mon": ["08:00-12:00"]}, "holidays": ["2026-02-30"]}),
            "dates",
        ),
        (
            json!({"week": {"mon": ["08:00-12:00"]}, "holidays": ["2026-10-03"], "extra_working_days": ["2026-10-03"]}),
            "both",
        ),
        (json!({"week": {}}), "never open"),
    ] {
        let got = put(&d.admin, "/api/desk/calendar", body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "calendar_invalid");
        assert!(
            got.1["message"].as_str().unwrap().contains(says),
            "{says}: {}",
            got.1
        );
    }
    assert_error(
        &put(
            &d.admin,
            "/api/desk/calendar",
            json!({"week": {"someday": []}}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &put(
            &d.staff,
            "/api/desk/calendar",
            json!({"week": {"mon": ["08:00-12:00"]}}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (s, c) = put(
        &d.admin,
        "/api/desk/calendar",
        json!({
            "utc_offset": "+08:00",
            "week": {"mon": ["13:00-17:00", "08:30-12:00"], "sat": ["09:00-12:00"]},
            "holidays": ["2026-10-02", "2026-10-01"],
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    // Returned and stored normalised: hours and dates sorted.
    assert_eq!(c["week"]["mon"], json!(["08:30-12:00", "13:00-17:00"]));
    assert_eq!(c["holidays"], json!(["2026-10-01", "2026-10-02"]));
    let (_, stored) = d.admin.get("/api/desk/calendar").await;
    assert_eq!(stored, c);
}

fn escalations(view: &Value) -> Vec<Value> {
    view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "escalated")
        .map(|e| e["data"].clone())
        .collect()
}

#[tokio::test]
async fn escalation_steps_land_in_the_timeline_at_50_75_100_and_a_paused_clock_waits() {
    let d = desk().await;
    let staff_id = d.ids["test-d-staff"].clone();
    // Response 30 min, resolution 4 h, 7×24, for every priority.
    let (s, p) = d
        .admin
        .send(
            reqwest::Method::PUT,
            "/api/desk/sla",
            Some(flat_policy(30, 240)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let new_assigned = |title: &'static str| {
        let (student, staff, staff_id) = (d.student.clone(), d.staff.clone(), staff_id.clone());
        async move {
            let (s, t) = student
                .post("/api/tickets", json!({"kind":"incident","title":title}))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{t}");
            let id = t["id"].as_str().unwrap().to_owned();
            // Taking it is the first response: the response clock stops.
            let (s, t) = staff
                .post(
                    &format!("/api/tickets/{id}/assign"),
                    json!({"assignee_id": staff_id}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{t}");
            id
        }
    };
    let running = new_assigned("escalates").await;
    let waiting = new_assigned("waits for its reporter").await;
    let (s, t) = d
        .staff
        .post(
            &format!("/api/tickets/{waiting}/state"),
            json!({"state":"waiting","text":"which VM?"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["sla_breached"]["resolution_state"], "paused", "{t}");
    assert!(
        t["resolution_due"].is_null(),
        "a paused clock has no due instant: {t}"
    );
    let (_, t) = d.staff.get(&format!("/api/tickets/{running}")).await;
    assert_eq!(t["sla_breached"]["resolution_state"], "running", "{t}");
    assert_eq!(t["sla_breached"]["response_state"], "stopped", "{t}");
    assert_eq!(t["sla_breached"]["resolution_level"], "ok", "{t}");
    assert!(t["resolution_due"].is_string(), "{t}");

    let desk = d.env.server.state.desk.clone();
    let now = time::OffsetDateTime::now_utc();
    let at = |min: i64| now + time::Duration::minutes(min);
    // Under half of the target: nothing.
    assert_eq!(desk.escalate(at(100)).await.unwrap(), 0);
    // 50 %: the assignee is warned, once.
    assert_eq!(desk.escalate(at(121)).await.unwrap(), 1);
    assert_eq!(desk.escalate(at(125)).await.unwrap(), 0);
    let (_, t) = d.staff.get(&format!("/api/tickets/{running}")).await;
    let steps = escalations(&t);
    assert_eq!(steps.len(), 1, "{t}");
    assert_eq!(steps[0]["clock"], "resolution");
    assert_eq!(steps[0]["percent"], 50);
    assert_eq!(steps[0]["breach"], false);
    assert_eq!(steps[0]["notify"], "assignee");
    assert_eq!(steps[0]["due_at"], t["resolution_due"], "{t}");
    let row = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "escalated")
        .unwrap();
    assert!(row["actor_id"].is_null(), "the server escalates: {row}");
    assert_eq!(row["internal"], true);
    // The reporter does not see the desk's escalations.
    let (_, mine) = d.student.get(&format!("/api/tickets/{running}")).await;
    assert!(escalations(&mine).is_empty(), "{mine}");

    // 75 %, then the breach at 100 %: the admins hear of it.
    assert_eq!(desk.escalate(at(181)).await.unwrap(), 1);
    assert_eq!(desk.escalate(at(241)).await.unwrap(), 1);
    let (_, t) = d.staff.get(&format!("/api/tickets/{running}")).await;
    let steps = escalations(&t);
    let got: Vec<(u64, bool, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["percent"].as_u64().unwrap(),
                s["breach"].as_bool().unwrap(),
                s["notify"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (50, false, "assignee"),
            (75, false, "assignee"),
            (100, true, "admins")
        ]
    );

    // The waiting ticket's clocks paused: however late, nothing.
    assert_eq!(desk.escalate(at(10_000)).await.unwrap(), 0);
    let (_, t) = d.staff.get(&format!("/api/tickets/{waiting}")).await;
    assert!(escalations(&t).is_empty(), "{t}");
    // The reporter answers: the clock runs again, from where it paused.
    let (s, t) = d
        .student
        .post(
            &format!("/api/tickets/{waiting}/comments"),
            json!({"text":"the one named test-vm"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "in_progress");
    let resumed = time::OffsetDateTime::now_utc();
    let since = |min: i64| resumed + time::Duration::minutes(min);
    assert_eq!(desk.escalate(since(100)).await.unwrap(), 0);
    assert_eq!(desk.escalate(since(125)).await.unwrap(), 1);
    let (_, t) = d.staff.get(&format!("/api/tickets/{waiting}")).await;
    assert_eq!(escalations(&t).len(), 1, "{t}");

    // The stats count what the pass recorded: both responses in time, one
    // resolution breached (the other still runs).
    let (s, st) = d.staff.get("/api/desk/stats").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["sla"]["response"]["met"], 2, "{st}");
    assert_eq!(st["sla"]["response"]["breached"], 0, "{st}");
    assert_eq!(st["sla"]["resolution"]["met"], 0, "{st}");
    assert_eq!(st["sla"]["resolution"]["breached"], 1, "{st}");
    assert_eq!(st["sla"]["resolution"]["compliance"], 0.0, "{st}");
    assert_eq!(st["sla_compliance"], 2.0 / 3.0, "{st}");
    let prio = t["priority"].as_str().unwrap();
    assert_eq!(
        st["sla"]["by_priority"][prio]["resolution"]["breached"], 1,
        "{st}"
    );
    assert_eq!(st["series"][0]["resolution_compliance"], 0.0, "{st}");
}

#[tokio::test]
async fn an_unassigned_urgent_ticket_escalates_faster_and_a_late_resolve_still_records_its_breach()
{
    let d = desk().await;
    let (s, p) = d
        .admin
        .send(
            reqwest::Method::PUT,
            "/api/desk/sla",
            Some(flat_policy(40, 400)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    // One user, a class in session: P2, and nobody has taken it.
    let (s, t) = d
        .student
        .post(
            "/api/tickets",
            json!({"kind":"incident","title":"lab VM gone","urgency":"in_session"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["priority"], "P2", "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let desk = d.env.server.state.desk.clone();
    let now = time::OffsetDateTime::now_utc();
    let at = |min: i64| now + time::Duration::minutes(min);
    // A quarter of the 40-minute response target: the whole desk hears of it.
    assert_eq!(desk.escalate(at(5)).await.unwrap(), 0);
    assert_eq!(desk.escalate(at(11)).await.unwrap(), 1);
    // Half: the admins, who dispatch.
    assert_eq!(desk.escalate(at(21)).await.unwrap(), 1);
    let (_, t) = d.staff.get(&format!("/api/tickets/{id}")).await;
    let steps: Vec<(u64, String)> = escalations(&t)
        .iter()
        .map(|s| {
            assert_eq!(s["clock"], "response");
            (
                s["percent"].as_u64().unwrap(),
                s["notify"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![(25, "desk".to_owned()), (50, "admins".to_owned())],
        "{t}"
    );

    // Taken and resolved, but late: the ticket had been reported an hour
    // before (its report time set back in the database — the clocks read
    // it). Resolved, it is no longer open; the next pass still looks at it
    // (its timeline grew) and records the response breach, once.
    sqlx::query("UPDATE tickets SET created_at = $1 WHERE id = $2")
        .bind(pvce::db::format_time(now - time::Duration::minutes(60)))
        .bind(&id)
        .execute(&d.env.server.state.pool)
        .await
        .unwrap();
    let staff_id = d.ids["test-d-staff"].clone();
    let (s, _) = d
        .staff
        .post(
            &format!("/api/tickets/{id}/assign"),
            json!({"assignee_id": staff_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = d
        .staff
        .post(
            &format!("/api/tickets/{id}/resolve"),
            json!({"resolution":"restarted"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["sla_breached"]["response"], true, "{t}");
    assert_eq!(desk.escalate(at(1)).await.unwrap(), 1);
    let (_, t) = d.staff.get(&format!("/api/tickets/{id}")).await;
    let last = escalations(&t).last().unwrap().clone();
    assert_eq!(last["percent"], 100, "{t}");
    assert_eq!(last["breach"], true);
    assert_eq!(last["notify"], "admins");
    assert_eq!(last["clock"], "response");
    let (_, st) = d.staff.get("/api/desk/stats").await;
    assert_eq!(st["sla"]["response"]["met"], 0, "{st}");
    assert_eq!(st["sla"]["response"]["breached"], 1, "{st}");
    assert_eq!(st["sla"]["resolution"]["met"], 1, "{st}");
    assert_eq!(
        st["sla"]["by_priority"]["P2"]["response"]["compliance"], 0.0,
        "{st}"
    );
    // Finished and unchanged: later passes leave it alone.
    assert_eq!(desk.escalate(at(10_000)).await.unwrap(), 0);
}

/// An RFC 3339 time moved by `secs` seconds (as the server writes times).
fn shifted(at: &str, secs: i64) -> String {
    let t =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    pvce::db::format_time(t + time::Duration::seconds(secs))
}
