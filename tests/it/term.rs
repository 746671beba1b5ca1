//! The end of a term and a person's own data (issue 20): the download of
//! everything pvce holds about the caller. Real server, real SQLite; no VM
//! runs (the layers are files made at enrolment).

use crate::common::lab::{course, import_tiny, spec};
use crate::common::tool::run_tool;
use crate::common::{Client, TestEnv, get_bytes};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn my_export_holds_my_data_and_nothing_of_another_student() {
    let env = TestEnv::start().await;
    env.user("test-term-teacher", Role::Teacher).await;
    env.user("test-term-staff", Role::Staff).await;
    let me = env.user("test-term-me", Role::Student).await;
    let other = env.user("test-term-other", Role::Student).await;
    let teacher = env.client("test-term-teacher").await;
    let tpl = import_tiny(&teacher, "test-term-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "TERM-1", "name": "Term one", "vm_specs": [spec("main", &tpl, 128)]}),
        &["test-term-me", "test-term-other"],
    )
    .await;
    let a = env.client("test-term-me").await;
    let b = env.client("test-term-other").await;
    let (s, mine) = a
        .post(
            "/api/tickets",
            json!({"kind": "incident", "title": "my-own-ticket-title", "description": "mine"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{mine}");
    let (s, theirs) = b
        .post(
            "/api/tickets",
            json!({"kind": "request", "title": "another-students-ticket", "description": "theirs"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{theirs}");
    let staff = env.client("test-term-staff").await;
    let tid = mine["id"].as_str().unwrap();
    for (text, internal) in [("a-reply-to-me", false), ("staff-only-note", true)] {
        let (s, body) = staff
            .post(
                &format!("/api/tickets/{tid}/comments"),
                json!({"text": text, "internal": internal}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let (_, vms_a) = a.get("/api/vms").await;
    let (_, vms_b) = b.get("/api/vms").await;
    let my_vm = vms_a[0]["id"].as_str().unwrap().to_owned();
    let their_vm = vms_b[0]["id"].as_str().unwrap().to_owned();

    let (status, headers, bytes) = get_bytes(&a, "/api/me/export").await;
    assert_eq!(status, StatusCode::OK);
    let disposition = headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let text = String::from_utf8(bytes).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format"], "pvce-personal-data/1");
    assert_eq!(doc["user_id"], me["id"]);
    let sec = &doc["sections"];
    assert_eq!(sec["account"]["username"], "test-term-me");
    assert_eq!(sec["courses_enrolled"][0]["id"], c["id"]);
    assert_eq!(sec["layers"][0]["vm_id"], my_vm.as_str());
    assert_eq!(sec["layers"].as_array().unwrap().len(), 1);
    assert_eq!(sec["tickets"][0]["title"], "my-own-ticket-title");
    assert!(
        text.contains("a-reply-to-me"),
        "the reply the reporter reads"
    );
    // A sign-in of theirs is in the audit section.
    assert!(
        sec["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "sign_in"),
        "{}",
        sec["audit"]
    );
    // Nothing of the other student, no internal note, no secret.
    for absent in [
        other["id"].as_str().unwrap(),
        "test-term-other",
        "another-students-ticket",
        their_vm.as_str(),
        theirs["id"].as_str().unwrap(),
        "staff-only-note",
        "$argon2",
        "password_hash",
        "overlays/",
    ] {
        assert!(!text.contains(absent), "the export holds {absent:?}");
    }

    // The other student's export is theirs alone.
    let (_, _, bytes) = get_bytes(&b, "/api/me/export").await;
    let text_b = String::from_utf8(bytes).unwrap();
    assert!(text_b.contains("another-students-ticket"));
    assert!(!text_b.contains("my-own-ticket-title"));
    assert!(!text_b.contains(&my_vm));
}

/// The user's one VM of a course.
async fn vm_in(client: &Client, course: &str) -> String {
    let (_, vms) = client.get(&format!("/api/vms?course_id={course}")).await;
    vms[0]["id"].as_str().unwrap().to_owned()
}

/// The overlay file of a VM (the test reads the server's own record of it).
async fn overlay_of(env: &TestEnv, vm: &str) -> Option<std::path::PathBuf> {
    sqlx::query_scalar::<_, String>("SELECT overlay_path FROM vms WHERE id = $1")
        .bind(vm)
        .fetch_optional(&env.server.state.pool)
        .await
        .unwrap()
        .map(Into::into)
}

/// The whole end of a term on a clock the test controls: the teacher sets
/// the end and the retention, students are told, the course is archived at
/// its end (no starts, read-only layers, export still works), nothing is
/// erased before the retention is over, then a student's layers are erased
/// with an erase record they see — except a held student's, until the hold
/// is released. An active course is never touched.
#[tokio::test]
async fn a_course_ends_is_archived_and_erased_after_its_retention_except_what_is_held() {
    let env = TestEnv::start().await;
    env.user("test-term2-teacher", Role::Teacher).await;
    env.user("test-term2-admin", Role::Admin).await;
    env.user("test-term2-me", Role::Student).await;
    let held = env.user("test-term2-held", Role::Student).await;
    let teacher = env.client("test-term2-teacher").await;
    let admin = env.client("test-term2-admin").await;
    let me = env.client("test-term2-me").await;
    let them = env.client("test-term2-held").await;
    let tpl = import_tiny(&teacher, "test-term2-tiny").await;
    let students = ["test-term2-me", "test-term2-held"];
    let c = course(
        &teacher,
        json!({"code": "TERM-2", "name": "Ends", "vm_specs": [spec("main", &tpl, 128)]}),
        &students,
    )
    .await;
    let active = course(
        &teacher,
        json!({"code": "TERM-2B", "name": "Goes on", "vm_specs": [spec("main", &tpl, 128)]}),
        &students,
    )
    .await;
    let cid = c["id"].as_str().unwrap();
    let path = format!("/api/courses/{cid}");
    assert_eq!(c["state"], "active");
    assert_eq!(c["retention_days"], 180);

    // Bad input is a 400, never a change.
    for bad in [
        json!({"retention_days": 4000}),
        json!({"ends_at": "next friday"}),
        json!({"ends": "2030-01-01T00:00:00Z"}),
    ] {
        let (s, body) = teacher
            .send(reqwest::Method::PATCH, &path, Some(bad.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {body}");
    }
    // The end: three days from now (real time: the server's own loop must
    // not act before the test does), kept ten days.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let end = now + time::Duration::days(3);
    let (s, patched) = teacher
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"ends_at": pvce::db::format_time(end), "retention_days": 10})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["ends_at"], pvce::db::format_time(end));
    assert_eq!(patched["retention_days"], 10);
    // Another teacher's student cannot; a student cannot at all.
    let (s, _) = me
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"retention_days": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Students are told until when they can download their work.
    let erase_at = end + time::Duration::days(10);
    let (s, told) = me.get("/api/me/term").await;
    assert_eq!(s, StatusCode::OK, "{told}");
    assert_eq!(told.as_array().unwrap().len(), 1, "{told}");
    assert_eq!(told[0]["course_id"], cid);
    assert_eq!(told[0]["download_until"], pvce::db::format_time(erase_at));

    // An admin holds one student against erasure (once).
    let hold_body = json!({"user_id": held["id"], "reason": "appeal pending"});
    let (s, hold) = admin.post("/api/term-holds", hold_body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{hold}");
    let (s, again) = admin.post("/api/term-holds", hold_body).await;
    crate::common::assert_error(&(s, again), StatusCode::CONFLICT, "hold_exists");
    let (_, told) = them.get("/api/me/term").await;
    assert_eq!(told[0]["held"], true, "{told}");
    assert!(told[0]["download_until"].is_null(), "{told}");

    let my_vm = vm_in(&me, cid).await;
    let held_vm = vm_in(&them, cid).await;
    let my_active_vm = vm_in(&me, active["id"].as_str().unwrap()).await;
    let my_layer = overlay_of(&env, &my_vm).await.unwrap();
    assert!(my_layer.exists());

    // Before the end nothing happens; at the end the loop archives.
    let term = &env.server.state.term;
    let r = term.tick(end - time::Duration::seconds(1)).await.unwrap();
    assert!(r.archived.is_empty() && r.erased == 0, "{r:?}");
    let r = term.tick(end).await.unwrap();
    assert_eq!(r.archived, vec![uuid::Uuid::parse_str(cid).unwrap()]);
    assert_eq!(r.erased, 0);
    let (_, archived) = me.get(&path).await;
    assert_eq!(archived["state"], "archived", "{archived}");
    // No new starts, a read-only layer — each with the reason; export works.
    let refused = [
        me.post_empty(&format!("/api/vms/{my_vm}/start")).await,
        me.post(
            &format!("/api/vms/{my_vm}/snapshots"),
            json!({"name": "late"}),
        )
        .await,
        me.post_empty(&format!("/api/vms/{my_vm}/reset")).await,
    ];
    for got in refused {
        assert!(
            got.1["message"].as_str().unwrap().contains("TERM-2"),
            "{}",
            got.1
        );
        crate::common::assert_error(&got, StatusCode::CONFLICT, "course_archived");
    }
    let (s, _, bytes) = get_bytes(&me, &format!("/api/vms/{my_vm}/export")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!bytes.is_empty());
    let (s, body) = teacher
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"ends_at": pvce::db::format_time(now)})),
        )
        .await;
    crate::common::assert_error(&(s, body), StatusCode::CONFLICT, "course_archived");

    // Not before the retention is over.
    let r = term
        .tick(erase_at - time::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(r.erased, 0, "{r:?}");
    assert!(my_layer.exists());
    let (_, none) = me.get("/api/erasures").await;
    assert_eq!(none, json!([]));

    // Then: my layer is gone with a record I see; the held one stays.
    let r = term.tick(erase_at).await.unwrap();
    assert_eq!(r.erased, 1, "{r:?}");
    assert!(!my_layer.exists(), "the layer file is removed");
    assert!(overlay_of(&env, &my_vm).await.is_none(), "the VM is gone");
    assert!(overlay_of(&env, &held_vm).await.unwrap().exists());
    assert!(
        overlay_of(&env, &my_active_vm).await.unwrap().exists(),
        "nothing of an active course"
    );
    let (s, records) = me.get("/api/erasures").await;
    assert_eq!(s, StatusCode::OK);
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["vm_id"], my_vm.as_str());
    assert_eq!(records[0]["course_code"], "TERM-2");
    assert_eq!(records[0]["what"], "layer");
    assert_eq!(records[0]["rule"], "retention");
    assert_eq!(records[0]["at"], pvce::db::format_time(erase_at));
    let (_, theirs) = them.get("/api/erasures").await;
    assert_eq!(theirs, json!([]), "another's record is not shown");
    let (_, _, bytes) = get_bytes(&me, "/api/me/export").await;
    let export: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(export["sections"]["erasures"][0]["vm_id"], my_vm.as_str());
    // Told no longer: the work is gone.
    let (_, told) = me.get("/api/me/term").await;
    assert_eq!(told, json!([]));

    // The hold released, the next pass erases the rest; an active course
    // stays whatever the time.
    let (s, _) = admin
        .delete(&format!("/api/term-holds/{}", hold["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let far = erase_at + time::Duration::days(3650);
    let r = term.tick(far).await.unwrap();
    assert_eq!(r.erased, 1, "{r:?}");
    assert!(overlay_of(&env, &held_vm).await.is_none());
    assert!(overlay_of(&env, &my_active_vm).await.unwrap().exists());
    let (_, all) = admin.get("/api/erasures").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
}

/// A teacher archives a course by hand: at once, idempotent; its end
/// cannot then be moved.
#[tokio::test]
async fn a_teacher_archives_a_course_by_hand() {
    let env = TestEnv::start().await;
    env.user("test-term3-teacher", Role::Teacher).await;
    env.user("test-term3-other", Role::Teacher).await;
    env.user("test-term3-student", Role::Student).await;
    let teacher = env.client("test-term3-teacher").await;
    let tpl = import_tiny(&teacher, "test-term3-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "TERM-3", "name": "Short", "vm_specs": [spec("main", &tpl, 128)]}),
        &["test-term3-student"],
    )
    .await;
    let archive = format!("/api/courses/{}/archive", c["id"].as_str().unwrap());
    let other = env.client("test-term3-other").await;
    let (s, _) = other.post_empty(&archive).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not another teacher's course");
    let (s, a) = teacher.post_empty(&archive).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "archived");
    let (s, b) = teacher.post_empty(&archive).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["archived_at"], b["archived_at"], "archived once");
    let student = env.client("test-term3-student").await;
    let (_, told) = student.get("/api/me/term").await;
    assert_eq!(told[0]["state"], "archived", "{told}");
}

/// Carry-over (issue 20): a student takes the disk of an old course's VM
/// (archived, even) into their VM of a follow-up course whose template
/// descends from the old one — the disk arrives exactly as the guest saw it
/// although the new template changed blocks the student never wrote. Refused
/// with the reason for an unrelated template, another student's VM, a used
/// target disk and an archived target. No VM runs.
#[tokio::test]
async fn a_student_carries_a_disk_over_to_a_follow_up_course() {
    const MIB: u64 = 1024 * 1024;
    let env = TestEnv::start().await;
    env.user("test-carry-teacher", Role::Teacher).await;
    env.user("test-carry-a", Role::Student).await;
    env.user("test-carry-b", Role::Student).await;
    let teacher = env.client("test-carry-teacher").await;
    let base = import_tiny(&teacher, "test-carry-base").await;
    let unrelated = import_tiny(&teacher, "test-carry-other").await;
    // The follow-up template: a thin child of the base whose last MiB it
    // changed (what the new course installed).
    let vsize = base["virtual_size_bytes"].as_u64().unwrap();
    let work = env.dir.path().join("carry");
    std::fs::create_dir_all(&work).unwrap();
    let child_src = work.join("child.qcow2");
    run_tool(
        std::process::Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-u",
                "-F",
                "qcow2",
                "-b",
                "/elsewhere/base.qcow2",
            ])
            .arg(&child_src)
            .arg(vsize.to_string()),
    );
    let raw = json!({"driver": "qcow2", "file": {"driver": "file", "filename": child_src}, "backing": null});
    run_tool(
        std::process::Command::new("qemu-io")
            .arg("-c")
            .arg(format!("write -P 0xab {} {MIB}", vsize - MIB))
            .arg(format!("json:{raw}")),
    );
    let (s, follow) = teacher
        .upload(
            &format!(
                "/api/templates/import?name=test-carry-next&format=qcow2&os=tiny-linux&software=busybox,lab-files&parent_id={}",
                base["id"].as_str().unwrap()
            ),
            &child_src,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{follow}");
    let old = course(
        &teacher,
        json!({"code": "CARRY-1", "name": "Part one", "vm_specs": [spec("main", &base, 128)]}),
        &["test-carry-a", "test-carry-b"],
    )
    .await;
    let next = course(
        &teacher,
        json!({"code": "CARRY-2", "name": "Part two", "vm_specs": [spec("main", &follow, 128)]}),
        &["test-carry-a"],
    )
    .await;
    let elsewhere = course(
        &teacher,
        json!({"code": "CARRY-X", "name": "Unrelated", "vm_specs": [spec("main", &unrelated, 128)]}),
        &["test-carry-a"],
    )
    .await;
    let a = env.client("test-carry-a").await;
    let b = env.client("test-carry-b").await;
    let a_old = vm_in(&a, old["id"].as_str().unwrap()).await;
    let a_next = vm_in(&a, next["id"].as_str().unwrap()).await;
    let a_else = vm_in(&a, elsewhere["id"].as_str().unwrap()).await;
    let b_old = vm_in(&b, old["id"].as_str().unwrap()).await;
    // The student's work in the old course: blocks written into their layer,
    // one of them where the new template changed the base.
    let old_layer = overlay_of(&env, &a_old).await.unwrap();
    for (offset, pattern) in [(MIB, "0x5a"), (vsize - MIB, "0x11")] {
        run_tool(
            std::process::Command::new("qemu-io")
                .args(["-f", "qcow2", "-c"])
                .arg(format!("write -P {pattern} {offset} 65536"))
                .arg(&old_layer),
        );
    }

    let carry = |target: &str| format!("/api/vms/{target}/carry-over");
    let got = a.post(&carry(&a_else), json!({"from_vm_id": a_old})).await;
    crate::common::assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_not_descendant",
    );
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("test-carry-other"),
        "{}",
        got.1
    );
    let got = a.post(&carry(&a_next), json!({"from_vm_id": b_old})).await;
    assert_eq!(
        got.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another student's VM: {}",
        got.1
    );
    let got = b.post(&carry(&a_next), json!({"from_vm_id": b_old})).await;
    assert_eq!(
        got.0,
        StatusCode::NOT_FOUND,
        "into another student's VM: {}",
        got.1
    );

    // The old course ends; its disk can still be carried over.
    let (s, _) = teacher
        .post_empty(&format!(
            "/api/courses/{}/archive",
            old["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, vm) = a.post(&carry(&a_next), json!({"from_vm_id": a_old})).await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    assert_eq!(vm["id"], a_next.as_str());
    let new_layer = overlay_of(&env, &a_next).await.unwrap();
    // What the guest sees through each chain is the same disk.
    run_tool(
        std::process::Command::new("qemu-img")
            .args(["compare", "-q", "-f", "qcow2", "-F", "qcow2"])
            .arg(&old_layer)
            .arg(&new_layer),
    );
    let info: Value = serde_json::from_str(&run_tool(
        std::process::Command::new("qemu-img")
            .args(["info", "--output=json", "-f", "qcow2"])
            .arg(&new_layer),
    ))
    .unwrap();
    assert!(
        info["backing-filename"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}.qcow2", follow["id"].as_str().unwrap())),
        "on the new template: {info}"
    );
    // Never over work, never into an archived course.
    let got = a.post(&carry(&a_next), json!({"from_vm_id": a_old})).await;
    crate::common::assert_error(&got, StatusCode::CONFLICT, "layer_in_use");
    let got = a.post(&carry(&a_old), json!({"from_vm_id": a_next})).await;
    crate::common::assert_error(&got, StatusCode::CONFLICT, "course_archived");
}

/// An instant as the desk's messages show it: in the lab's offset (the
/// test server's default, +08:00).
fn shown(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::macros::offset!(+08:00));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} (UTC+08:00)",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The end of a term reaches the students through the desk too, on a clock
/// the test controls: when the course enters its notice window each
/// student gets one bell entry and one e-mail (a real SMTP server) in their
/// language, saying until when and how to download their work; a student
/// who switched the kind off gets nothing; the next pass — or a restarted
/// server's — sends nothing again; a moved end date is told anew.
#[tokio::test]
async fn students_are_told_of_the_end_once_in_the_bell_and_by_mail_in_their_language() {
    let mut sink = crate::notify::SmtpSink::start(&[]).await;
    let port = sink.port;
    let env = TestEnv::start_with(|c| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = Some(port);
        c.smtp_security = pvce::desk::notify::SmtpSecurity::None;
        c.smtp_from = "pvce <desk@lab.example>".into();
        c.public_url = Some("https://pvce.lab.example".into());
        c.notify_loop = false;
    })
    .await;
    env.user("test-tn-teacher", Role::Teacher).await;
    for name in ["test-tn-zh", "test-tn-en", "test-tn-off"] {
        env.user(name, Role::Student).await;
    }
    let teacher = env.client("test-tn-teacher").await;
    let zh = env.client("test-tn-zh").await;
    let en = env.client("test-tn-en").await;
    let off = env.client("test-tn-off").await;
    let settings = "/api/me/notification-settings";
    let (_, set) = zh.get(settings).await;
    assert_eq!(
        set["events"]["term"],
        json!({"in_app": true, "email": true, "webhook": true}),
        "on by default: {set}"
    );
    for (client, body) in [
        (&zh, json!({"lang": "zh-CN", "email": "zh@lab.example"})),
        (&en, json!({"lang": "en", "email": "en@lab.example"})),
        (
            &off,
            json!({"lang": "en", "email": "off@lab.example",
                   "events": {"term": {"in_app": false, "email": false, "webhook": false}}}),
        ),
    ] {
        let (s, v) = client
            .send(reqwest::Method::PUT, settings, Some(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let tpl = import_tiny(&teacher, "test-tn-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "TN-1", "name": "操作系统", "vm_specs": [spec("main", &tpl, 128)]}),
        &["test-tn-zh", "test-tn-en", "test-tn-off"],
    )
    .await;
    let cid = c["id"].as_str().unwrap();
    // The end far away on the wall clock (the server's own loop, on real
    // time, has nothing to tell), near on the test's.
    let end = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        + time::Duration::days(100);
    let patch = |end: time::OffsetDateTime| json!({"ends_at": pvce::db::format_time(end), "retention_days": 30});
    let (s, v) = teacher
        .send(
            reqwest::Method::PATCH,
            &format!("/api/courses/{cid}"),
            Some(patch(end)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let term = &env.server.state.term;
    let notices = &env.server.state.notices;
    let days = time::Duration::days;

    // Before the window: nothing.
    let r = term.tick(end - days(15)).await.unwrap();
    assert_eq!(r.told, 0, "{r:?}");
    // In the window: each student once.
    let t1 = end - days(10);
    let r = term.tick(t1).await.unwrap();
    assert_eq!(r.told, 3, "{r:?}");
    notices.run_once(t1).await.unwrap();
    let until = shown(end + days(30));
    let (_, page) = zh.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 1, "{page}");
    let n = &page["items"][0];
    assert_eq!(n["kind"], "term", "{n}");
    assert_eq!(n["course_id"], cid, "{n}");
    assert!(n["ticket_id"].is_null(), "{n}");
    assert_eq!(
        n["subject"],
        format!("[pvce] 课程 TN-1「操作系统」即将结束：请在 {until} 之前下载你的作业"),
    );
    let (_, page) = en.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 1, "{page}");
    assert_eq!(
        page["items"][0]["subject"],
        format!("[pvce] Course TN-1 “操作系统” ends soon: download your work before {until}"),
    );
    // The reader's language on request.
    let (_, page) = en.get("/api/me/notifications?lang=zh-CN").await;
    assert!(
        page["items"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("将于 {} 结束", shown(end))),
        "{page}"
    );
    let (_, page) = off.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 0, "switched off: {page}");

    // Mail: one each, in the reader's language, with until when, how, and the link.
    let mut mails = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let m = sink.next_mail().await;
        mails.insert(
            m["rcpt_tos"][0].as_str().unwrap().to_owned(),
            (
                m["subject"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().replace("\r\n", "\n"),
            ),
        );
    }
    let (subject, body) = &mails["zh@lab.example"];
    assert!(subject.contains("即将结束"), "{subject}");
    assert!(
        body.contains(&format!("你可以下载自己的作业直到 {until}")),
        "{body}"
    );
    assert!(body.contains("“导出”"), "{body}");
    assert!(
        body.contains("https://pvce.lab.example/#/courses"),
        "{body}"
    );
    let (subject, body) = &mails["en@lab.example"];
    assert!(subject.contains("ends soon"), "{subject}");
    assert!(
        body.contains(&format!("You can download your work until {until}")),
        "{body}"
    );
    assert!(body.contains("Export on your VM's card"), "{body}");
    assert!(!mails.contains_key("off@lab.example"));

    // The next pass, and a restarted server's (a new service over the same
    // database), tell nobody again.
    let r = term.tick(t1 + days(1)).await.unwrap();
    assert_eq!(r.told, 0, "{r:?}");
    let restarted = pvce::term::Term::new(
        env.server.state.pool.clone(),
        env.server.state.vms.clone(),
        env.server.state.backups.clone(),
    );
    let r = restarted.tick(t1 + days(2)).await.unwrap();
    assert_eq!(r.told, 0, "{r:?}");
    notices.run_once(t1 + days(2)).await.unwrap();
    for client in [&zh, &en] {
        let (_, page) = client.get("/api/me/notifications").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    }
    let sent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM notification_deliveries WHERE source = 'term'")
            .fetch_one(&env.server.state.pool)
            .await
            .unwrap();
    assert_eq!(sent, 2, "one e-mail each, no more");

    // The teacher moves the end a week later: the new date is told anew.
    let later = end + days(7);
    let (s, v) = teacher
        .send(
            reqwest::Method::PATCH,
            &format!("/api/courses/{cid}"),
            Some(patch(later)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t2 = later - days(10);
    let r = term.tick(t2).await.unwrap();
    assert_eq!(r.told, 3, "{r:?}");
    notices.run_once(t2).await.unwrap();
    let (_, page) = en.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 2, "{page}");
    assert!(
        page["items"][0]["subject"]
            .as_str()
            .unwrap()
            .contains(&shown(later + days(30))),
        "{page}"
    );
    let m = sink.next_mail().await;
    let m2 = sink.next_mail().await;
    let mut to = [
        m["rcpt_tos"][0].as_str().unwrap(),
        m2["rcpt_tos"][0].as_str().unwrap(),
    ];
    to.sort_unstable();
    assert_eq!(to, ["en@lab.example", "zh@lab.example"]);
    let r = term.tick(t2 + days(1)).await.unwrap();
    assert_eq!(r.told, 0, "{r:?}");
    let (_, page) = off.get("/api/me/notifications").await;
    assert_eq!(page["unread"], 0, "{page}");
}
