//! Class time (issue 15): a course's timetable through the API — sessions
//! entered in the lab's wall clock or as instants, weekly ones with
//! exceptions, an iCalendar import that reads what it can and says what it
//! skipped, edits and deletes by the course's teacher only, bad input as
//! 4xx, and the course's students reading the upcoming occurrences.

use crate::common::lab::{import_tiny, spec};
use crate::common::{TestEnv, assert_error};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_course_timetable_is_kept_by_its_teacher_and_read_by_its_students() {
    let env = TestEnv::start().await;
    env.user("test-tt-teacher", Role::Teacher).await;
    env.user("test-tt-other", Role::Teacher).await;
    env.user("test-tt-alice", Role::Student).await;
    env.user("test-tt-bob", Role::Student).await;
    let teacher = env.client("test-tt-teacher").await;
    let other = env.client("test-tt-other").await;
    let alice = env.client("test-tt-alice").await;
    let bob = env.client("test-tt-bob").await;
    let tpl = import_tiny(&teacher, "test-tt-tiny").await;
    let (s, course) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-tt-os", "name": "OS", "vm_specs": [spec("linux", &tpl, 256)]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let cid = course["id"].as_str().unwrap();
    let (s, _) = teacher
        .post(
            &format!("/api/courses/{cid}/students"),
            json!({"usernames": ["test-tt-alice"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let sessions = format!("/api/courses/{cid}/sessions");

    // Weekly, in the lab's wall clock (+08:00 by default), far in the future
    // so that every occurrence is upcoming; the national-day week skipped.
    let (s, weekly) = teacher
        .post(
            &sessions,
            json!({"title": "Lab", "date": "2030-09-02", "start": "08:00", "end": "09:40",
                   "weekly_until": "2030-10-14", "exceptions": ["2030-09-30"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{weekly}");
    assert_eq!(weekly["starts_at"], "2030-09-02T00:00:00Z", "{weekly}");
    assert_eq!(weekly["local"]["weekday"], 1, "{weekly}");
    assert_eq!(weekly["local"]["start"], "08:00");
    assert_eq!(weekly["next"].as_array().unwrap().len(), 3, "{weekly}");
    assert_eq!(weekly["next"][1]["starts_at"], "2030-09-09T00:00:00Z");
    let wid = weekly["id"].as_str().unwrap();

    // An iCalendar file: a weekly event read, a monthly one skipped with its reason.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:exam@test\r\n\
SUMMARY:Exam\r\nDTSTART:20301215T060000Z\r\nDTEND:20301215T080000Z\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:monthly@test\r\nDTSTART:20300901T000000Z\r\nDTEND:20300901T010000Z\r\n\
RRULE:FREQ=MONTHLY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let (s, imported) = teacher.post_body(&sessions, "text/calendar", ics).await;
    assert_eq!(s, StatusCode::CREATED, "{imported}");
    assert_eq!(
        imported["imported"].as_array().unwrap().len(),
        1,
        "{imported}"
    );
    assert_eq!(imported["imported"][0]["title"], "Exam");
    assert_eq!(imported["imported"][0]["source"], "ics");
    assert_eq!(imported["skipped"][0]["uid"], "monthly@test", "{imported}");
    let got = teacher
        .post_body(&sessions, "text/calendar", "not a calendar")
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "bad_calendar");

    // Bad input: 4xx with a reason, never stored.
    for (body, status, code) in [
        (
            json!({"date": "2030-09-02", "start": "10:00", "end": "09:00"}),
            422,
            "bad_schedule",
        ),
        (
            json!({"date": "2030-09-02", "start": "08:00", "end": "09:00", "weekly_until": "2032-01-01"}),
            422,
            "bad_schedule",
        ),
        (
            json!({"date": "2030-02-30", "start": "08:00", "end": "09:00"}),
            400,
            "bad_request",
        ),
        (
            json!({"starts_at": "tomorrow", "ends_at": "2030-09-02T01:00:00Z"}),
            400,
            "bad_request",
        ),
        (
            json!({"date": "2030-09-02", "start": "08:00"}),
            400,
            "bad_request",
        ),
        (
            json!({"date": "2030-09-02", "start": "08:00", "end": "09:00", "colour": "red"}),
            400,
            "bad_request",
        ),
    ] {
        let got = teacher.post(&sessions, body.clone()).await;
        assert_error(&got, StatusCode::from_u16(status).unwrap(), code);
    }

    // Edit: instants work too; a one-off now.
    let (s, edited) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("{sessions}/{wid}"),
            Some(
                json!({"title": "Lab (moved)", "starts_at": "2030-09-03T06:00:00+08:00",
                        "ends_at": "2030-09-03T07:30:00+08:00"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["weekly_until"], serde_json::Value::Null);
    assert_eq!(edited["starts_at"], "2030-09-02T22:00:00Z");
    assert_eq!(edited["local"]["date"], "2030-09-03");

    // The enrolled student reads the timetable; a student of another course
    // and another teacher do not even learn it exists, and cannot change it.
    let (s, list) = alice.get(&sessions).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Lab (moved)", "Exam"], "{list}");
    assert_error(
        &bob.get(&sessions).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &other.get(&sessions).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &other.delete(&format!("{sessions}/{wid}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &alice.delete(&format!("{sessions}/{wid}")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Delete.
    let (s, _) = teacher.delete(&format!("{sessions}/{wid}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_error(
        &teacher.delete(&format!("{sessions}/{wid}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, list) = alice.get(&sessions).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
