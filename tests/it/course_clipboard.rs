//! The per-course clipboard switches of the browser desktop (issue 18):
//! `clipboard_to_guest` and `clipboard_from_guest` on a course — optional on
//! create (default on, so older clients keep their behaviour), stored, shown
//! to whoever may see the course (the desktop page of a student reads them),
//! refused with 400 when not booleans, and only the course's teacher (or an
//! admin) sets them — on create, or later on the existing course
//! (`PUT /api/courses/{id}/clipboard`).

use crate::common::lab::{import_tiny, spec};
use crate::common::{TestEnv, assert_error};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn course_clipboard_switches_default_on_and_reach_the_students() {
    let env = TestEnv::start().await;
    env.user("test-clip-teacher", Role::Teacher).await;
    env.user("test-clip-alice", Role::Student).await;
    env.user("test-clip-bob", Role::Student).await;
    let teacher = env.client("test-clip-teacher").await;
    let alice = env.client("test-clip-alice").await;
    let bob = env.client("test-clip-bob").await;
    let tpl = import_tiny(&teacher, "test-clip-tiny").await;
    let specs = json!([spec("linux", &tpl, 256)]);

    // Not given: both on.
    let (s, open) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-clip-open", "name": "Open", "vm_specs": specs}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{open}");
    assert_eq!(open["clipboard_to_guest"], true, "{open}");
    assert_eq!(open["clipboard_from_guest"], true, "{open}");

    // An exam: pasting in off, copying out still on.
    let (s, exam) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-clip-exam", "name": "Exam", "vm_specs": specs,
                   "clipboard_to_guest": false, "clipboard_from_guest": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{exam}");
    assert_eq!(exam["clipboard_to_guest"], false, "{exam}");
    assert_eq!(exam["clipboard_from_guest"], true, "{exam}");
    let exam_id = exam["id"].as_str().unwrap();
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{exam_id}/students"),
            json!({"usernames": ["test-clip-alice"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");

    // The enrolled student reads them (her desktop page honours them), in
    // the course and in her course list; another student sees no such course.
    let (s, seen) = alice.get(&format!("/api/courses/{exam_id}")).await;
    assert_eq!(s, StatusCode::OK, "{seen}");
    assert_eq!(seen["clipboard_to_guest"], false, "{seen}");
    assert_eq!(seen["clipboard_from_guest"], true, "{seen}");
    let (_, list) = alice.get("/api/courses").await;
    assert_eq!(list[0]["clipboard_to_guest"], false, "{list}");
    let (s, _) = bob.get(&format!("/api/courses/{exam_id}")).await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::FORBIDDEN,
        "{s}"
    );

    // Not booleans: 400 with the API's error body; nothing created.
    for bad in [json!("no"), json!(0), json!(null)] {
        assert_error(
            &teacher
                .post(
                    "/api/courses",
                    json!({"code": "test-clip-bad", "name": "Bad", "vm_specs": specs,
                           "clipboard_from_guest": bad}),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    // Students cannot create courses, switches or not.
    assert_error(
        &alice
            .post(
                "/api/courses",
                json!({"code": "test-clip-own", "name": "Own", "vm_specs": specs,
                       "clipboard_to_guest": true}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (_, all) = teacher.get("/api/courses").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Later, on the existing course: the teacher opens the exam up again
    // for pasting and closes copying out; the student reads the new switches.
    let (s, changed) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{exam_id}/clipboard"),
            Some(json!({"to_guest": true, "from_guest": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    assert_eq!(changed["clipboard_to_guest"], true, "{changed}");
    assert_eq!(changed["clipboard_from_guest"], false, "{changed}");
    assert_eq!(changed["code"], "test-clip-exam", "{changed}");
    let (_, seen) = alice.get(&format!("/api/courses/{exam_id}")).await;
    assert_eq!(seen["clipboard_to_guest"], true, "{seen}");
    assert_eq!(seen["clipboard_from_guest"], false, "{seen}");
    // Both switches, booleans, nothing else: 400.
    for bad in [
        json!({"to_guest": true}),
        json!({"to_guest": "yes", "from_guest": true}),
        json!({"to_guest": true, "from_guest": true, "lab_network": true}),
    ] {
        assert_error(
            &teacher
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/courses/{exam_id}/clipboard"),
                    Some(bad),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    // The enrolled student may not change them.
    assert_error(
        &alice
            .send(
                reqwest::Method::PUT,
                &format!("/api/courses/{exam_id}/clipboard"),
                Some(json!({"to_guest": true, "from_guest": true})),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (_, seen) = alice.get(&format!("/api/courses/{exam_id}")).await;
    assert_eq!(seen["clipboard_from_guest"], false, "unchanged: {seen}");
}
