//! The periodic service report (issue 14), black-box: a week of desk and
//! event-log records written with known times, a draft generated over it,
//! its figures checked against numbers worked out by hand, analysis edited,
//! reviewed, published (then edits are refused), teachers seeing only
//! published reports, the CSV's figures, and the PDF rendered to PNG with
//! `pdftoppm` and checked to have ink on every page.

use std::path::Path;

use crate::common::{self, TestEnv, assert_error};
use pvce::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[allow(clippy::too_many_arguments)]
async fn ticket(
    pool: &pvce::db::Pool,
    reporter: &str,
    number: i64,
    kind: &str,
    priority: &str,
    channel: &str,
    state: &str,
    times: [Option<&str>; 4],
    assignee: Option<&str>,
    rating: Option<i64>,
    reopen_count: i64,
) {
    let [created, responded, resolved, closed] = times;
    sqlx::query(
        "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact, urgency,
                              channel, reporter_id, created_by, assignee_id, created_at, updated_at,
                              responded_at, resolved_at, closed_at, resolution, rating, reopen_count)
         VALUES ($1, $2, $3, $4, 'fixture', $5, $6, 'user', 'not_blocking', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(number)
    .bind(kind)
    .bind(format!("测试工单 {number}"))
    .bind(state)
    .bind(priority)
    .bind(channel)
    .bind(reporter)
    .bind(reporter)
    .bind(assignee)
    .bind(created)
    .bind(created)
    .bind(responded)
    .bind(resolved)
    .bind(closed)
    .bind(resolved.map(|_| format!("已处理 {number}")))
    .bind(rating)
    .bind(reopen_count)
    .execute(pool)
    .await
    .unwrap();
}

async fn event(pool: &pvce::db::Pool, at: &str, kind: &str, node: &str) {
    sqlx::query("INSERT INTO events (at, kind, node_id, node_name, message) VALUES ($1, $2, NULL, $3, 'fixture')")
        .bind(at)
        .bind(kind)
        .bind(node)
        .execute(pool)
        .await
        .unwrap();
}

/// The week of Monday 2026-03-02: five tickets, two engineers, two nodes'
/// outages (the records of the unit tests of `reports::figures`, plus a P1
/// that breaches both SLA clocks in business time).
pub(crate) async fn fixture(env: &TestEnv, reporter: &str, li: &str, wang: &str) {
    let pool = &env.server.state.pool;
    let some = Some;
    ticket(
        pool,
        reporter,
        9001,
        "incident",
        "P1",
        "web",
        "closed",
        [
            some("2026-03-02T09:00:00Z"),
            some("2026-03-02T09:10:00Z"),
            some("2026-03-02T10:00:00Z"),
            some("2026-03-02T10:30:00Z"),
        ],
        Some(li),
        Some(5),
        0,
    )
    .await;
    ticket(
        pool,
        reporter,
        9002,
        "incident",
        "P2",
        "phone",
        "closed",
        [
            some("2026-03-03T09:00:00Z"),
            some("2026-03-03T10:30:00Z"),
            some("2026-03-03T16:50:00Z"),
            some("2026-03-04T09:00:00Z"),
        ],
        Some(li),
        None,
        1,
    )
    .await;
    ticket(
        pool,
        reporter,
        9003,
        "request",
        "P3",
        "web",
        "in_progress",
        [
            some("2026-03-04T08:00:00Z"),
            some("2026-03-04T08:30:00Z"),
            None,
            None,
        ],
        Some(wang),
        None,
        0,
    )
    .await;
    ticket(
        pool,
        reporter,
        9004,
        "complaint",
        "P4",
        "email",
        "closed",
        [
            some("2026-03-05T12:00:00Z"),
            some("2026-03-05T13:00:00Z"),
            some("2026-03-06T12:00:00Z"),
            some("2026-03-06T13:00:00Z"),
        ],
        Some(wang),
        Some(2),
        0,
    )
    .await;
    ticket(
        pool,
        reporter,
        9005,
        "incident",
        "P3",
        "web",
        "new",
        [some("2026-03-06T10:00:00Z"), None, None, None],
        None,
        None,
        0,
    )
    .await;
    // Monday 09:00–13:00 in the service calendar's UTC+8: answered after 60
    // business minutes (P1 target 15: 45 over), resolved after 180 (the
    // lunch break does not count; target 120: 60 over).
    ticket(
        pool,
        reporter,
        9007,
        "incident",
        "P1",
        "phone",
        "resolved",
        [
            some("2026-03-02T01:00:00Z"),
            some("2026-03-02T02:00:00Z"),
            some("2026-03-02T05:00:00Z"),
            None,
        ],
        None,
        None,
        0,
    )
    .await;
    // Outside the week: not counted.
    ticket(
        pool,
        reporter,
        9006,
        "incident",
        "P1",
        "web",
        "new",
        [some("2026-03-09T00:00:00Z"), None, None, None],
        None,
        None,
        0,
    )
    .await;
    event(pool, "2026-03-01T22:00:00Z", "node_down", "test-n1").await;
    event(pool, "2026-03-01T23:00:00Z", "vm_start_failed", "test-n1").await;
    event(pool, "2026-03-02T01:00:00Z", "node_up", "test-n1").await;
    event(pool, "2026-03-03T08:00:00Z", "vm_start_failed", "test-n1").await;
    event(pool, "2026-03-04T12:00:00Z", "node_down", "test-n2").await;
    event(pool, "2026-03-04T12:30:00Z", "node_up", "test-n2").await;
    event(pool, "2026-03-08T23:10:00Z", "node_down", "test-n2").await;
}

/// The share of pixels of a PNG that are not near-white.
fn ink(path: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let total = px.len() / channels;
    let dark = px
        .chunks(channels)
        .filter(|p| p.iter().take(3.min(channels)).any(|&c| c < 200))
        .count();
    dark as f64 / total as f64
}

fn csv_value(csv: &str, section: &str, figure: &str, key: &str) -> Option<String> {
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    r.records().map(Result::unwrap).find_map(|rec| {
        (rec.get(0) == Some(section) && rec.get(1) == Some(figure) && rec.get(2) == Some(key))
            .then(|| rec.get(3).unwrap_or_default().to_owned())
    })
}

#[tokio::test]
async fn a_report_from_draft_to_published_with_its_csv_and_pdf() {
    let env = TestEnv::start().await;
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [
        ("test-r-student", Role::Student),
        ("test-r-teacher", Role::Teacher),
        ("test-r-li", Role::Staff),
        ("test-r-wang", Role::Staff),
        ("test-r-admin", Role::Admin),
    ] {
        let u = env.user(name, role).await;
        ids.insert(name, u["id"].as_str().unwrap().to_owned());
    }
    let admin = env.client("test-r-admin").await;
    let teacher = env.client("test-r-teacher").await;
    let staff = env.client("test-r-li").await;
    let student = env.client("test-r-student").await;
    fixture(
        &env,
        &ids["test-r-student"],
        &ids["test-r-li"],
        &ids["test-r-wang"],
    )
    .await;

    // Bad input is a 4xx, never a 500: a reversed range is well-formed
    // but unacceptable (422, API.md), a malformed one a 400.
    let bad = admin
        .post(
            "/api/reports",
            json!({"period":"custom","from":"2026-03-09","to":"2026-03-02"}),
        )
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_range");
    let bad = admin
        .post("/api/reports", json!({"period":"fortnight"}))
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
    let bad = admin
        .post("/api/reports", json!({"period":"week","from":"March"}))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "bad_request");
    // Only admins generate.
    let no = teacher.post("/api/reports", json!({"period":"week"})).await;
    assert_error(&no, StatusCode::FORBIDDEN, "forbidden");

    // A week given by a day inside it is the same range as the custom one.
    let (s, week) = admin
        .post("/api/reports", json!({"period":"week","from":"2026-03-04"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{week}");
    assert_eq!(
        (week["from"].as_str(), week["to"].as_str()),
        (Some("2026-03-02T00:00:00Z"), Some("2026-03-09T00:00:00Z"))
    );
    let (s, r) = admin
        .post(
            "/api/reports",
            json!({"period":"custom","from":"2026-03-02","to":"2026-03-09"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["state"], "draft");
    let id = r["id"].as_str().unwrap().to_owned();
    let f = &r["sections"];
    assert_eq!(f["sections"], Value::Null);

    // Figures known by hand (see fixture()).
    assert_eq!(f["incidents"]["total"], 6, "{f}");
    assert_eq!(
        f["incidents"]["by_kind"],
        json!({"complaint":1,"incident":4,"request":1})
    );
    assert_eq!(
        f["incidents"]["by_priority"],
        json!({"P1":2,"P2":1,"P3":2,"P4":1})
    );
    assert_eq!(
        f["incidents"]["by_channel"],
        json!({"email":1,"phone":2,"web":3})
    );
    // Responses 10, 30, 60, 60, 90 min (nearest rank: 3rd and 5th);
    // resolutions 60, 240, 470, 1440 min (2nd and 4th).
    assert_eq!(
        f["incidents"]["response"],
        json!({"count":5,"p50_minutes":60.0,"p90_minutes":90.0})
    );
    assert_eq!(
        f["incidents"]["resolution"],
        json!({"count":4,"p50_minutes":240.0,"p90_minutes":1440.0})
    );
    // Done: 9001, 9002 (reopened once), 9004, 9007.
    assert_eq!(f["incidents"]["first_time_fix_rate"], 0.75);
    assert_eq!(f["incidents"]["reopen_rate"], 0.25);
    assert_eq!(common::strings(&f["incidents"]["major"], "title").len(), 2);
    assert_eq!(f["incidents"]["major"][1]["number"], 9007);
    assert_eq!(
        f["satisfaction"]["distribution"],
        json!({"1":0,"2":1,"3":0,"4":0,"5":1})
    );
    assert_eq!(f["satisfaction"]["average"], 3.5);
    assert_eq!(f["satisfaction"]["unrated"], 1);
    assert_eq!(f["satisfaction"]["complaints"][0]["number"], 9004);
    assert_eq!(
        f["workload"],
        json!([
            {"name":"test-r-li","assigned":2,"resolved":2,"handling_rate":1.0},
            {"name":"test-r-wang","assigned":2,"resolved":1,"handling_rate":0.5},
        ])
    );
    // n1: 60 min down inside the week, n2: 30 + 50 min (of 10 080).
    let sl = &f["service_levels"];
    assert_eq!(
        sl["nodes"][0],
        json!({"node":"test-n1","down_events":0,"downtime_minutes":60.0,"availability":0.994,"start_failures":1})
    );
    assert_eq!(
        sl["nodes"][1],
        json!({"node":"test-n2","down_events":2,"downtime_minutes":80.0,"availability":0.9921,"start_failures":0})
    );
    assert_eq!(sl["node_availability"], 0.9931);
    assert_eq!(sl["vm_start_failures"], 1);
    // SLA in the service calendar (UTC+8, 08:00–12:00 and 13:30–17:30 on
    // weekdays): every fixture ticket but 9007 falls outside business
    // hours or meets its targets; 9005 and 9003 are still running, not late.
    let p1 = &f["sla"]["per_priority"][0];
    assert_eq!(
        (
            &p1["priority"],
            &p1["tickets"],
            &p1["response_met"],
            &p1["response_breached"]
        ),
        (&json!("P1"), &json!(2), &json!(1), &json!(1))
    );
    assert_eq!(f["sla"]["response_compliance"], 0.8);
    assert_eq!(f["sla"]["resolution_compliance"], 0.75);
    assert_eq!(
        f["sla"]["breaches"],
        json!([
            {"number":9007,"title":"测试工单 9007","priority":"P1","clock":"resolution","due_at":"2026-03-02T03:00:00Z","over_minutes":60},
            {"number":9007,"title":"测试工单 9007","priority":"P1","clock":"response","due_at":"2026-03-02T01:15:00Z","over_minutes":45},
        ])
    );
    assert_eq!(f["summary"]["response_compliance"], 0.8);

    // Drafts are the admins' only: 404 to teachers and staff, 403 to students.
    let (s, list) = teacher.get("/api/reports").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list, json!([]));
    assert_error(
        &teacher.get(&format!("/api/reports/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &staff.get(&format!("/api/reports/{id}/csv")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &student.get("/api/reports").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // The analysis, in draft.
    let texts = json!({"texts": {
        "summary": "本周服务总体平稳,两张工单超时。",
        "sla": "P3 请求积压:周末无人值守。",
        "plan": "1. 周末安排值班。\n2. Review the P3 queue every morning.",
    }});
    let (s, edited) = admin
        .send(Method::PATCH, &format!("/api/reports/{id}"), Some(texts))
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["texts"]["sla"], "P3 请求积压:周末无人值守。");
    let bad = admin
        .send(
            Method::PATCH,
            &format!("/api/reports/{id}"),
            Some(json!({"texts":{"nonsense":"x"}})),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "bad_request");
    // An empty text removes one.
    let (s, edited) = admin
        .send(
            Method::PUT,
            &format!("/api/reports/{id}"),
            Some(json!({"texts":{"sla":""}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["texts"].get("sla"), None);
    let (s, regen) = admin
        .post_empty(&format!("/api/reports/{id}/regenerate"))
        .await;
    assert_eq!(s, StatusCode::OK, "{regen}");
    assert_eq!(regen["sections"]["incidents"]["total"], 6);

    // Publishing needs a review first.
    let early = admin
        .post_empty(&format!("/api/reports/{id}/publish"))
        .await;
    assert_error(&early, StatusCode::CONFLICT, "report_state");
    let (s, reviewed) = admin.post_empty(&format!("/api/reports/{id}/review")).await;
    assert_eq!(s, StatusCode::OK, "{reviewed}");
    assert_eq!(reviewed["state"], "reviewed");
    let late = admin
        .send(
            Method::PATCH,
            &format!("/api/reports/{id}"),
            Some(json!({"texts":{"plan":"changed"}})),
        )
        .await;
    assert_error(&late, StatusCode::CONFLICT, "report_state");
    let (s, published) = admin
        .post_empty(&format!("/api/reports/{id}/publish"))
        .await;
    assert_eq!(s, StatusCode::OK, "{published}");
    assert_eq!(published["state"], "published");
    assert!(published["published_at"].is_string());
    // Published is immutable.
    for attempt in [
        admin
            .send(
                Method::PATCH,
                &format!("/api/reports/{id}"),
                Some(json!({"texts":{"plan":"changed"}})),
            )
            .await,
        admin
            .post_empty(&format!("/api/reports/{id}/regenerate"))
            .await,
        admin.post_empty(&format!("/api/reports/{id}/review")).await,
        admin
            .post_empty(&format!("/api/reports/{id}/publish"))
            .await,
    ] {
        assert_error(&attempt, StatusCode::CONFLICT, "report_state");
    }
    let (_, again) = admin.get(&format!("/api/reports/{id}")).await;
    assert_eq!(again["texts"], published["texts"]);
    assert_eq!(again["sections"], published["sections"]);

    // Teachers and staff now read it; the draft stays hidden.
    let (s, list) = teacher.get("/api/reports").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(common::strings(&list, "id"), [id.as_str()]);
    let (s, seen) = teacher.get(&format!("/api/reports/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(seen["sections"], published["sections"]);
    let (s, all) = admin.get("/api/reports").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 2);

    // The CSV holds every figure, equal to the JSON's (both URL forms).
    for path in [
        format!("/api/reports/{id}/csv"),
        format!("/api/reports/{id}.csv"),
    ] {
        let (s, headers, body) = common::get_bytes(&teacher, &path).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            headers[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = String::from_utf8(body).unwrap();
        assert!(csv.starts_with("section,figure,key,value\n"), "{csv}");
        let v = |s: &str, f: &str, k: &str| csv_value(&csv, s, f, k);
        assert_eq!(v("incidents", "total", "").as_deref(), Some("6"));
        assert_eq!(
            v("incidents", "response_p50_minutes", "").as_deref(),
            Some("60")
        );
        assert_eq!(
            v("incidents", "resolution_p90_minutes", "").as_deref(),
            Some("1440")
        );
        assert_eq!(v("incidents", "by_channel", "web").as_deref(), Some("3"));
        assert_eq!(v("satisfaction", "average", "").as_deref(), Some("3.5"));
        assert_eq!(
            v("workload", "handling_rate", "test-r-wang").as_deref(),
            Some("0.5")
        );
        assert_eq!(
            v("service_levels", "availability", "test-n2").as_deref(),
            Some("0.9921")
        );
        let sla = &published["sections"]["sla"];
        for (i, p) in ["P1", "P2", "P3", "P4"].iter().enumerate() {
            assert_eq!(
                v("sla", "resolution_breached", p),
                Some(sla["per_priority"][i]["resolution_breached"].to_string())
            );
        }
    }

    // The PDF, in Chinese and in English: pages with ink on them.
    let out = env.dir.path().join("pdf");
    std::fs::create_dir_all(&out).unwrap();
    for (path, name) in [
        (format!("/api/reports/{id}/pdf?lang=zh-CN"), "zh"),
        (format!("/api/reports/{id}.pdf?lang=en"), "en"),
    ] {
        let (s, headers, body) = common::get_bytes(&teacher, &path).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers[reqwest::header::CONTENT_TYPE], "application/pdf");
        assert!(body.starts_with(b"%PDF-"));
        let pdf = out.join(format!("{name}.pdf"));
        std::fs::write(&pdf, &body).unwrap();
        let st = std::process::Command::new("pdftoppm")
            .args(["-r", "50", "-png"])
            .arg(&pdf)
            .arg(out.join(name))
            .status()
            .expect("pdftoppm (poppler-utils, scripts/setup.sh)");
        assert!(st.success());
        let mut pages: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let f = p.file_name().unwrap().to_string_lossy().into_owned();
                f.starts_with(&format!("{name}-")) && f.ends_with(".png")
            })
            .collect();
        pages.sort();
        assert!(pages.len() >= 2, "{pages:?}");
        for p in &pages {
            let share = ink(p);
            assert!(share > 0.005, "{} is blank ({share})", p.display());
        }
        if let Some(keep) = std::env::var_os("PVCE_KEEP_PDF") {
            for p in pages.iter().chain([&pdf]) {
                std::fs::copy(p, Path::new(&keep).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    // Unknown suffixes and ids are 404.
    assert_error(
        &admin.get(&format!("/api/reports/{id}.docx")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &admin.get("/api/reports/not-a-uuid.pdf").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
