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

/// A course of `tag` with one tiny-guest VM spec, its teacher and two
/// students (`{tag}-alice`, `{tag}-bob`), each with their VM.
struct TwoStudents {
    teacher: crate::common::Client,
    alice: crate::common::Client,
    bob: crate::common::Client,
    alice_user: serde_json::Value,
    bob_user: serde_json::Value,
    course: serde_json::Value,
    vm_a: String,
    vm_b: String,
}

async fn two_students(env: &TestEnv, tag: &str) -> TwoStudents {
    use crate::common::lab;
    let (t, a, b) = (
        format!("{tag}-teacher"),
        format!("{tag}-alice"),
        format!("{tag}-bob"),
    );
    env.user(&t, Role::Teacher).await;
    let alice_user = env.user(&a, Role::Student).await;
    let bob_user = env.user(&b, Role::Student).await;
    let teacher = env.client(&t).await;
    let alice = env.client(&a).await;
    let bob = env.client(&b).await;
    let tpl = import_tiny(&teacher, &format!("{tag}-tiny")).await;
    let course = lab::course(
        &teacher,
        json!({"code": tag, "name": "Class time", "vm_specs": [spec("linux", &tpl, 192)]}),
        &[&a, &b],
    )
    .await;
    let vm_a = lab::vm_of(env, &alice, &course, "linux").await;
    let vm_b = lab::vm_of(env, &bob, &course, "linux").await;
    TwoStudents {
        teacher,
        alice,
        bob,
        alice_user,
        bob_user,
        course,
        vm_a,
        vm_b,
    }
}

/// A session beginning in a few (test-clock) minutes, with real guests: the
/// class-time loop pre-starts the class one start at a time (limits of 1),
/// the waiting student sees their place, the warnings come at T−15 and T−5,
/// and at the end both VMs are shut down. The loop is ticked with the
/// test's instants (its background pass is off).
#[tokio::test]
async fn a_session_prestarts_the_class_within_the_limits_warns_and_stops_it() {
    use crate::common;
    use std::time::Duration as StdDuration;
    use time::{Duration, OffsetDateTime};

    let env = TestEnv::start_with(|c| {
        c.class_interval_secs = 0;
        c.class_starts_per_node = 1;
        c.class_starts_cluster = 1;
        c.class_boot_secs = 0;
        c.class_lead_minutes = 10;
        c.shutdown_timeout_secs = 20;
    })
    .await;
    let TwoStudents {
        teacher,
        alice,
        bob,
        alice_user,
        bob_user,
        course,
        vm_a,
        vm_b,
    } = two_students(&env, "test-ct").await;
    let cid = course["id"].as_str().unwrap();

    // The session: a day from now (test clock), 30 minutes.
    let start = (OffsetDateTime::now_utc() + Duration::days(1))
        .replace_nanosecond(0)
        .unwrap();
    let end = start + Duration::minutes(30);
    let fmt = |t: OffsetDateTime| pvce::db::format_time(t);
    let (s, session) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"title": "Lab", "starts_at": fmt(start), "ends_at": fmt(end)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");

    let class = env.server.state.class.clone();
    let pool = env.server.state.pool.clone();
    let user = |v: &serde_json::Value| {
        let id = uuid::Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
        let pool = pool.clone();
        async move { pvce::users::get(&pool, id).await.unwrap() }
    };
    let (alice_u, bob_u) = (user(&alice_user).await, user(&bob_user).await);
    let state_of = |client: &crate::common::Client, vm: &str| {
        let (client, vm) = (client.clone(), vm.to_owned());
        async move {
            let (_, v) = client.get(&format!("/api/vms/{vm}")).await;
            v["state"].as_str().unwrap_or_default().to_owned()
        }
    };

    // Eleven minutes before: outside the lead time, nothing happens.
    let r = class.tick(start - Duration::minutes(11)).await.unwrap();
    assert_eq!((r.queued, r.admitted.len()), (0, 0));

    // Five minutes before: both queued, one admitted (limits of 1), the
    // other waits with place 1 and an estimate, and its VM stays stopped.
    let t = start - Duration::minutes(5);
    let r = class.tick(t).await.unwrap();
    assert_eq!((r.queued, r.admitted.len(), r.waiting), (2, 1, 1), "{r:?}");
    let first = r.admitted[0].to_string();
    let (first_vm, second_vm, second_u) = if first == vm_a {
        (vm_a.clone(), vm_b.clone(), &bob_u)
    } else {
        (vm_b.clone(), vm_a.clone(), &alice_u)
    };
    let second_id = uuid::Uuid::parse_str(&second_vm).unwrap();
    let st = class.status(second_u, second_id, t).await.unwrap();
    let place = st.queue.expect("the second VM waits in the queue");
    assert_eq!(place.place, 1);
    assert!(place.estimate_secs > 0);
    assert_eq!(st.session.unwrap().ends_at, end);
    assert_eq!(st.warning_minutes, None);
    let second_client = if second_vm == vm_a { &alice } else { &bob };
    assert_eq!(state_of(second_client, &second_vm).await, "stopped");
    // Its owner reads the same through the API (real time: no session yet,
    // but the queue place is the loop's).
    let (s, v) = second_client
        .get(&format!("/api/vms/{second_vm}/class"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["queue"]["place"], 1, "{v}");

    // Once the first start returned, the next tick admits the second.
    common::wait_for(
        "the first pre-start",
        StdDuration::from_secs(120),
        || async { (class.starts_in_flight() == 0).then_some(()) },
    )
    .await;
    let first_client = if first_vm == vm_a { &alice } else { &bob };
    assert_eq!(state_of(first_client, &first_vm).await, "running");
    let r = class.tick(t + Duration::seconds(2)).await.unwrap();
    assert_eq!(r.admitted, vec![second_id], "{r:?}");
    common::wait_for(
        "the second pre-start",
        StdDuration::from_secs(120),
        || async { (class.starts_in_flight() == 0).then_some(()) },
    )
    .await;
    assert_eq!(state_of(second_client, &second_vm).await, "running");
    common::wait_serial(&env, &first_vm, "BOOT-OK", StdDuration::from_secs(180)).await;
    common::wait_serial(&env, &second_vm, "BOOT-OK", StdDuration::from_secs(180)).await;
    // The class provisioning indicator (src/slo): one pre-start, both VMs
    // usable — the second admitted 2 s after the pre-start, plus its start —
    // well before the session; the course's teacher reads it.
    let (s, r) = teacher
        .get(&format!(
            "/api/slo?from={}&to={}",
            fmt(start - Duration::hours(1)),
            fmt(end)
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let p = &r["provisioning"];
    assert_eq!(
        (&p["sessions"], &p["complete"], &p["ready_by_start"]),
        (&json!(1), &json!(1), &json!(1)),
        "{r}"
    );
    let one = &p["per_session"][0];
    assert_eq!((&one["vms"], &one["ready"]), (&json!(2), &json!(2)), "{p}");
    let secs = one["seconds"].as_f64().unwrap();
    assert!(secs > 2.0 && secs < 240.0, "{p}");
    assert_eq!(p["max_seconds"].as_f64(), Some(secs), "{p}");
    let (per_node, total) = class.peaks();
    assert_eq!(total, 1, "never more than one start in flight");
    assert!(per_node.values().all(|n| *n <= 1), "{per_node:?}");
    // Nothing is started twice in the same session.
    let r = class.tick(start + Duration::minutes(1)).await.unwrap();
    assert_eq!((r.queued, r.admitted.len()), (0, 0), "{r:?}");

    // The warnings: none 20 minutes before the end, 15 then 5.
    let first_u = if first_vm == vm_a { &alice_u } else { &bob_u };
    let first_id = uuid::Uuid::parse_str(&first_vm).unwrap();
    for (before_end, expected) in [(20, None), (14, Some(15)), (4, Some(5))] {
        let st = class
            .status(first_u, first_id, end - Duration::minutes(before_end))
            .await
            .unwrap();
        assert_eq!(
            st.warning_minutes, expected,
            "{before_end} minutes before the end"
        );
        assert!(st.queue.is_none());
    }

    // The end: both VMs get an ACPI shutdown and stop.
    let r = class.tick(end).await.unwrap();
    let mut stopped: Vec<String> = r.stopped.iter().map(|v| v.to_string()).collect();
    stopped.sort();
    let mut both = vec![vm_a.clone(), vm_b.clone()];
    both.sort();
    assert_eq!(stopped, both, "{r:?}");
    for (client, vm) in [(&alice, &vm_a), (&bob, &vm_b)] {
        common::wait_for(
            "the VM stopped at the end",
            StdDuration::from_secs(90),
            || async { (state_of(client, vm).await == "stopped").then_some(()) },
        )
        .await;
    }
    // After the end nothing is started again.
    let r = class.tick(end + Duration::minutes(1)).await.unwrap();
    assert_eq!(
        (r.queued, r.admitted.len(), r.stopped.len()),
        (0, 0, 0),
        "{r:?}"
    );
    let st = class
        .status(first_u, first_id, end + Duration::minutes(1))
        .await
        .unwrap();
    assert!(st.session.is_none() && st.warning_minutes.is_none());
}

/// The server running the class-time loop dies while a pre-start boots;
/// the loop of the server that takes its lease over (a fresh loop over the
/// same database, as that server loads it) counts the start left booting
/// against the per-node limit: the next VM waits until the first one's boot
/// time has passed instead of adding a second boot storm to the first.
#[tokio::test]
async fn a_loop_taking_over_counts_the_starts_left_booting() {
    use crate::common;
    use pvce::classtime::{admission::Limits, class};
    use std::time::Duration as StdDuration;
    use time::{Duration, OffsetDateTime};

    let boot = Duration::minutes(10);
    let env = TestEnv::start_with(|c| {
        c.class_interval_secs = 0;
        c.class_starts_per_node = 1;
        c.class_starts_cluster = 10;
        c.class_boot_secs = 600;
        c.class_lead_minutes = 10;
    })
    .await;
    let TwoStudents {
        teacher,
        alice,
        bob,
        course,
        vm_a,
        vm_b,
        ..
    } = two_students(&env, "test-cto").await;
    let cid = course["id"].as_str().unwrap();
    // The loop's clock is the wall clock here: the VMs' start stamps are.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let start = now + Duration::minutes(5);
    let fmt = |t: OffsetDateTime| pvce::db::format_time(t);
    let (s, session) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"title": "Lab", "starts_at": fmt(start), "ends_at": fmt(start + Duration::minutes(40))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");

    let state = &env.server.state;
    let r = state.class.tick(now).await.unwrap();
    assert_eq!((r.queued, r.admitted.len(), r.waiting), (2, 1, 1), "{r:?}");
    let first = r.admitted[0].to_string();
    let (first_client, second) = if first == vm_a {
        (&alice, vm_b.clone())
    } else {
        (&bob, vm_a.clone())
    };
    let second_client = if second == vm_a { &alice } else { &bob };
    let running = |client: &crate::common::Client, vm: &str| {
        let (client, vm) = (client.clone(), vm.to_owned());
        move || {
            let (client, vm) = (client.clone(), vm.clone());
            async move {
                let (_, v) = client.get(&format!("/api/vms/{vm}")).await;
                (v["state"] == "running").then_some(())
            }
        }
    };
    common::wait_for(
        "the first pre-start",
        StdDuration::from_secs(120),
        running(first_client, &first),
    )
    .await;

    // Its server is gone; the next holder of the lease loads the loop.
    let taken_over = class::ClassTime::load(
        state.sessions.clone(),
        state.vms.clone(),
        state.nodes.clone(),
        class::ClassSettings {
            limits: Limits {
                per_node: 1,
                cluster: 10,
            },
            lead: Duration::minutes(10),
            boot,
        },
    )
    .await
    .unwrap();
    let r = taken_over.tick(now + Duration::seconds(2)).await.unwrap();
    assert_eq!(
        (r.queued, r.admitted.len(), r.waiting),
        (1, 0, 1),
        "the first VM still boots on the only node: {r:?}"
    );
    // Once its boot time is over (counted from when its start returned,
    // a few seconds after `now`), the second is admitted.
    let later = now + boot + Duration::minutes(3);
    let r = taken_over.tick(later).await.unwrap();
    assert_eq!(
        r.admitted,
        vec![second.parse::<uuid::Uuid>().unwrap()],
        "{r:?}"
    );
    common::wait_for(
        "the second pre-start",
        StdDuration::from_secs(120),
        running(second_client, &second),
    )
    .await;
}

/// Nothing the class-time loop did is forgotten when the server restarts
/// on the same data (its loop ticked with the test's instants): the class
/// is pre-started once — a student who shut her VM down in class is not
/// overruled by the restarted server — and her 15 more minutes still hold:
/// the end of the session leaves her VM running, the end of the extension
/// shuts it down.
#[tokio::test]
async fn a_restart_forgets_neither_the_prestart_nor_the_extension() {
    use crate::common::{self, lab};
    use std::time::Duration as StdDuration;
    use time::{Duration, OffsetDateTime};

    let mut env = TestEnv::start_with(|c| {
        c.class_interval_secs = 0;
        c.class_boot_secs = 0;
        c.class_lead_minutes = 10;
        c.shutdown_timeout_secs = 20;
    })
    .await;
    env.user("test-ctr-teacher", Role::Teacher).await;
    let alice_user = env.user("test-ctr-alice", Role::Student).await;
    let teacher = env.client("test-ctr-teacher").await;
    let alice = env.client("test-ctr-alice").await;
    let tpl = import_tiny(&teacher, "test-ctr-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ctr", "name": "Restart", "vm_specs": [spec("linux", &tpl, 192)]}),
        &["test-ctr-alice"],
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    let vm = lab::vm_of(&env, &alice, &course, "linux").await;
    let vm_id = uuid::Uuid::parse_str(&vm).unwrap();
    let (s, r) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/extension"),
            Some(json!({"allowed": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let start = (OffsetDateTime::now_utc() + Duration::days(1))
        .replace_nanosecond(0)
        .unwrap();
    let end = start + Duration::minutes(30);
    let fmt = |t: OffsetDateTime| pvce::db::format_time(t);
    let (s, session) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"title": "Lab", "starts_at": fmt(start), "ends_at": fmt(end)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let alice_id = uuid::Uuid::parse_str(alice_user["id"].as_str().unwrap()).unwrap();
    let alice_u = pvce::users::get(&env.server.state.pool, alice_id)
        .await
        .unwrap();
    let state_of = |client: &crate::common::Client| {
        let (client, vm) = (client.clone(), vm.clone());
        async move {
            let (_, v) = client.get(&format!("/api/vms/{vm}")).await;
            v["state"].as_str().unwrap_or_default().to_owned()
        }
    };

    // The pre-start: her VM starts; she gets 15 more minutes ten minutes
    // before the end (the loop's instant), then shuts her VM down.
    let class = env.server.state.class.clone();
    let r = class.tick(start - Duration::minutes(5)).await.unwrap();
    assert_eq!((r.queued, r.admitted.clone()), (1, vec![vm_id]), "{r:?}");
    common::wait_for("the pre-start", StdDuration::from_secs(120), || async {
        (class.starts_in_flight() == 0).then_some(())
    })
    .await;
    assert_eq!(state_of(&alice).await, "running");
    let until = end + Duration::minutes(15);
    let st = class
        .extend(&alice_u, vm_id, end - Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(st.extended_until, Some(until));
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(state_of(&alice).await, "stopped");

    // The server restarts on the same data.
    drop(class);
    env.restart().await;
    let class = env.server.state.class.clone();
    let alice = env.client("test-ctr-alice").await;

    // In the session still: her VM is not pre-started again.
    let r = class.tick(start + Duration::minutes(1)).await.unwrap();
    assert_eq!((r.queued, r.admitted.len()), (0, 0), "{r:?}");
    assert_eq!(state_of(&alice).await, "stopped");
    // Her extension is known, and refused a second time.
    let st = class
        .status(&alice_u, vm_id, end - Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(st.extended_until, Some(until), "{st:?}");
    assert!(!st.can_extend, "{st:?}");
    assert!(matches!(
        class
            .extend(&alice_u, vm_id, end - Duration::minutes(5))
            .await,
        Err(pvce::classtime::ClassError::Extension(
            pvce::classtime::extension::Refusal::Already
        ))
    ));
    // She starts it herself; the end of the session leaves it running.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = class.tick(end).await.unwrap();
    assert!(
        r.stopped.is_empty(),
        "extended: not stopped at the end {r:?}"
    );
    assert_eq!(state_of(&alice).await, "running");
    let r = class.tick(end + Duration::minutes(5)).await.unwrap();
    assert!(r.stopped.is_empty(), "{r:?}");
    // The end of her extension shuts it down, and it is forgotten.
    let r = class.tick(until).await.unwrap();
    assert_eq!(r.stopped, vec![vm_id], "{r:?}");
    common::wait_for(
        "the VM stopped at the end of the extension",
        StdDuration::from_secs(90),
        || async { (state_of(&alice).await == "stopped").then_some(()) },
    )
    .await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM class_extensions")
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// A pre-start that fails is tried again after its back-off (the pure
/// `retry_delay`), not given up at the first error: the student's layer is
/// not there when the class's VM is first started (shared storage away for
/// a moment), the start fails; once the file is back the retry, admitted
/// no sooner than 30 s (test clock) later, starts the VM.
#[tokio::test]
async fn a_failed_prestart_is_tried_again_after_its_back_off() {
    use crate::common::{self, lab};
    use std::time::Duration as StdDuration;
    use time::{Duration, OffsetDateTime};

    let env = TestEnv::start_with(|c| {
        c.class_interval_secs = 0;
        c.class_boot_secs = 0;
        c.class_lead_minutes = 10;
    })
    .await;
    env.user("test-ctr-teacher", Role::Teacher).await;
    env.user("test-ctr-alice", Role::Student).await;
    let teacher = env.client("test-ctr-teacher").await;
    let alice = env.client("test-ctr-alice").await;
    let tpl = import_tiny(&teacher, "test-ctr-tiny").await;
    let course = lab::course(
        &teacher,
        json!({"code": "test-ctr", "name": "Retry", "vm_specs": [spec("linux", &tpl, 192)]}),
        &["test-ctr-alice"],
    )
    .await;
    let cid = course["id"].as_str().unwrap();
    let vm = lab::vm_of(&env, &alice, &course, "linux").await;
    let vm_id = uuid::Uuid::parse_str(&vm).unwrap();
    let start = (OffsetDateTime::now_utc() + Duration::days(1))
        .replace_nanosecond(0)
        .unwrap();
    let fmt = |t: OffsetDateTime| pvce::db::format_time(t);
    let (s, session) = teacher
        .post(
            &format!("/api/courses/{cid}/sessions"),
            json!({"title": "Lab", "starts_at": fmt(start), "ends_at": fmt(start + Duration::minutes(30))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let layer: String = sqlx::query_scalar("SELECT overlay_path FROM vms WHERE id = $1")
        .bind(&vm)
        .fetch_one(&env.server.state.pool)
        .await
        .unwrap();
    let away = format!("{layer}.test-away");
    std::fs::rename(&layer, &away).unwrap();

    let class = env.server.state.class.clone();
    let settled = || async { (class.starts_in_flight() == 0).then_some(()) };
    let state = || async {
        let (_, v) = alice.get(&format!("/api/vms/{vm}")).await;
        v["state"].as_str().unwrap_or_default().to_owned()
    };
    let t = start - Duration::minutes(5);
    let r = class.tick(t).await.unwrap();
    assert_eq!(r.admitted, vec![vm_id], "{r:?}");
    common::wait_for("the first attempt", StdDuration::from_secs(120), settled).await;
    assert_ne!(state().await, "running");

    std::fs::rename(&away, &layer).unwrap();
    // Within the back-off: waiting, not admitted.
    let r = class.tick(t + Duration::seconds(10)).await.unwrap();
    assert!(r.admitted.is_empty(), "{r:?}");
    // After it: the retry starts the VM.
    let r = class.tick(t + Duration::seconds(31)).await.unwrap();
    assert_eq!(r.admitted, vec![vm_id], "{r:?}");
    common::wait_for("the retry", StdDuration::from_secs(120), settled).await;
    assert_eq!(state().await, "running");
    // Started once it worked: never queued again in this session.
    let r = class.tick(t + Duration::minutes(3)).await.unwrap();
    assert_eq!((r.queued, r.admitted.len()), (0, 0), "{r:?}");
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert!(s.is_success(), "{v}");
}
