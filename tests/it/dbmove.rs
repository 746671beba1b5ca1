//! `pvce db migrate-from-sqlite` (src/dbmove.rs), black-box: a server on
//! SQLite gets real data through the API, is stopped, the real binary moves
//! its database into a fresh PostgreSQL database, and a server on that
//! database shows the same data — users sign in with their passwords,
//! tickets keep their timelines, the desk's figures are unchanged, new rows
//! get fresh ids — while a second move into the now filled database is
//! refused; and a source at another schema version is refused untouched.
//! The move itself needs PostgreSQL (`PVCE_TEST_DATABASE_URL`, CI's
//! PostgreSQL phase): without it that test fails, saying so.

use std::process::Command;

use crate::common::{self, TestEnv, database, lab, process};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What a ticket shows that the move must keep (the SLA clocks and
/// `can` depend on the moment and the viewer, not on the data).
fn ticket_facts(t: &Value) -> Value {
    let events: Vec<Value> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!([
                e["id"],
                e["kind"],
                e["text"],
                e["internal"],
                e["at"],
                e["actor_name"],
                e["data"]
            ])
        })
        .collect();
    json!({
        "number": t["number"], "title": t["title"], "state": t["state"], "priority": t["priority"],
        "rating": t["rating"], "assignee": t["assignee_name"], "reporter": t["reporter_name"],
        "created_at": t["created_at"], "responded_at": t["responded_at"],
        "resolved_at": t["resolved_at"], "events": events,
    })
}

/// Everything the test compares before and after the move.
struct Seen {
    tickets: Vec<Value>,
    stats: Value,
    kb: Value,
    notifications: Value,
    audit: Value,
    courses: Value,
    templates: Value,
}

struct People {
    student: common::Client,
    staff: common::Client,
    admin: common::Client,
    teacher: common::Client,
}

async fn people(env: &TestEnv) -> People {
    People {
        student: env.client("test-mv-student").await,
        staff: env.client("test-mv-staff").await,
        admin: env.client("test-mv-admin").await,
        teacher: env.client("test-mv-teacher").await,
    }
}

/// The desk's figures over a window fixed for the whole test (a days-wide
/// one around now: the default window ends at the moment of asking).
fn stats_path() -> String {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(2);
    format!(
        "/api/desk/stats?from={}&to={}",
        (now - day).date(),
        (now + day).date()
    )
}

async fn seen(p: &People, tickets: &[String], kb: &str) -> Seen {
    let mut views = Vec::new();
    for id in tickets {
        let (s, t) = p.staff.get(&format!("/api/tickets/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        views.push(ticket_facts(&t));
    }
    let get = |c: &common::Client, path: &'static str| {
        let c = c.clone();
        async move {
            let (s, v) = c.get(path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let (s, kb) = p.staff.get(&format!("/api/kb/{kb}")).await;
    assert_eq!(s, StatusCode::OK, "{kb}");
    Seen {
        tickets: views,
        stats: {
            let (s, v) = p.staff.get(&stats_path()).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        },
        kb,
        notifications: get(&p.student, "/api/me/notifications?lang=en").await,
        audit: get(&p.admin, "/api/audit").await,
        courses: get(&p.teacher, "/api/courses").await,
        templates: get(&p.teacher, "/api/templates").await,
    }
}

/// Runs `pvce db migrate-from-sqlite` on `data_dir` into `to`.
fn migrate(data_dir: &std::path::Path, to: &str) -> std::process::Output {
    Command::new(process::binary())
        .args(["db", "migrate-from-sqlite", "--data-dir"])
        .arg(data_dir)
        .args(["--to", to])
        .output()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: PVCE_TEST_DATABASE_URL and --include-ignored"]
async fn a_sqlite_installation_moves_into_postgresql_whole() {
    assert!(
        std::env::var(database::ENV).is_ok_and(|u| !u.trim().is_empty()),
        "this test moves a database into PostgreSQL: set {} (bash scripts/postgres.sh prints it)",
        database::ENV
    );
    // The server on its SQLite file, although the tests run on PostgreSQL.
    let mut env = TestEnv::start_with(|c| {
        c.database_url = Some(format!("sqlite://{}", c.data_dir.join("pvce.db").display()));
    })
    .await;
    let data_dir = env.data_dir();
    let mut staff_id = String::new();
    for (name, role) in [
        ("test-mv-student", Role::Student),
        ("test-mv-staff", Role::Staff),
        ("test-mv-admin", Role::Admin),
        ("test-mv-teacher", Role::Teacher),
    ] {
        let u = env.user(name, role).await;
        if role == Role::Staff {
            staff_id = u["id"].as_str().unwrap().to_owned();
        }
    }
    let p = people(&env).await;

    // A course on an imported template (a child of the root template: the
    // template tree references itself), the student enrolled.
    let tpl = lab::import_tiny(&p.teacher, "test-mv-tpl").await;
    lab::course(
        &p.teacher,
        json!({"code": "MV-101", "name": "Moving", "vm_specs": [lab::spec("linux", &tpl, 128)]}),
        &["test-mv-student"],
    )
    .await;

    // Tickets: one through its whole life, one still open.
    let (s, t) = p
        .student
        .post(
            "/api/tickets",
            json!({"kind":"incident","title":"我的虚拟机很慢","description":"since Monday","urgency":"not_blocking"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let done = t["id"].as_str().unwrap().to_owned();
    let path = |p: &str| format!("/api/tickets/{done}{p}");
    for (who, what, body) in [
        (&p.staff, "/assign", json!({"assignee_id": staff_id})),
        (&p.staff, "/comments", json!({"text":"looking at it"})),
        (
            &p.staff,
            "/comments",
            json!({"text":"the node is busy","internal":true}),
        ),
        (&p.student, "/comments", json!({"text":"still slow"})),
        (&p.staff, "/resolve", json!({"resolution":"moved the VM"})),
        (&p.student, "/confirm", json!({"rating": 4})),
    ] {
        let (s, v) = who.post(&path(what), body).await;
        assert!(s.is_success(), "{what}: {s} {v}");
    }
    let (s, t) = p
        .student
        .post(
            "/api/tickets",
            json!({"kind":"request","title":"more memory please"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let open = t["id"].as_str().unwrap().to_owned();
    let (s, v) = p
        .staff
        .post(
            &format!("/api/tickets/{open}/comments"),
            json!({"text":"asking the teacher"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, kb) = p
        .staff
        .post(
            "/api/kb",
            json!({"title":"虚拟机很慢","symptom":"桌面反应很慢。","fix":"关掉不用的虚拟机。","lang":"zh-CN","ticket_id": done}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{kb}");
    let kb = kb["id"].as_str().unwrap().to_owned();
    // In-app notifications of the replies, and a refused sign-in audited.
    env.server
        .state
        .notices
        .run_once(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let refused = reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .json(&json!({"username": "test-mv-student", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let tickets = [done.clone(), open.clone()];
    let before = seen(&p, &tickets, &kb).await;
    assert!(
        before.notifications["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "the student was notified: {}",
        before.notifications
    );
    assert!(before.audit.as_array().is_some_and(|a| !a.is_empty()));

    // The move, with the server stopped.
    env.server.abort();
    let target = database::url_for(&data_dir).unwrap();
    let out = migrate(&data_dir, &target);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "users: 4 rows copied; verified: 4 in SQLite = 4 in PostgreSQL",
        "tickets: 2 rows copied; verified: 2 in SQLite = 2 in PostgreSQL",
        "kb_articles: 1 rows copied",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    // The whole SQLite database, table by table (kb_fts and the migration
    // history aside), is in PostgreSQL.
    let sqlite =
        sqlx::AnyPool::connect(&format!("sqlite://{}", data_dir.join("pvce.db").display()))
            .await
            .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'
         AND name NOT LIKE 'kb_fts%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&sqlite)
    .await
    .unwrap();
    assert!(names.len() > 50, "{names:?}");
    for n in &names {
        assert!(
            stdout.contains(&format!("\n{n}: ")) || stdout.starts_with(&format!("{n}: ")),
            "{n} not moved:\n{stdout}"
        );
    }
    sqlite.close().await;

    // A server on PostgreSQL, same data dir: the same data.
    env.restart_with(|c| c.database_url = Some(target.clone()))
        .await;
    let p = people(&env).await;
    let after = seen(&p, &tickets, &kb).await;
    assert_eq!(after.tickets, before.tickets);
    assert_eq!(after.stats, before.stats);
    assert_eq!(after.kb, before.kb);
    assert_eq!(after.notifications, before.notifications);
    // The sign-ins just now were audited after the copied entries, with
    // the next sequence numbers (the identity moved past the copied ones).
    let last = |log: &Value| log[0]["seq"].as_i64().unwrap();
    let copied: Vec<&Value> = after
        .audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_i64() <= Some(last(&before.audit)))
        .collect();
    assert_eq!(
        Value::from(copied.into_iter().cloned().collect::<Vec<_>>()),
        before.audit
    );
    assert_eq!(
        after.audit.as_array().unwrap().len(),
        before.audit.as_array().unwrap().len() + 4
    );
    assert_eq!(last(&after.audit), last(&before.audit) + 4);
    assert_eq!(after.courses, before.courses);
    assert_eq!(after.templates, before.templates);

    // New rows: the sequences moved past the copied ids.
    let (s, t) = p
        .student
        .post(
            "/api/tickets",
            json!({"kind":"incident","title":"after the move"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let new_event = t["events"][0]["id"].as_i64().unwrap();
    let copied_max = before
        .tickets
        .iter()
        .flat_map(|t| t["events"].as_array().unwrap().iter())
        .filter_map(|e| e[0].as_i64())
        .max()
        .unwrap();
    assert!(new_event > copied_max, "{new_event} after {copied_max}");
    let (s, v) = p
        .staff
        .post(
            &format!("/api/tickets/{open}/comments"),
            json!({"text":"on PostgreSQL now"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, stats) = p.staff.get(&stats_path()).await;
    assert_ne!(stats, before.stats, "the new ticket is counted");

    // A second move into the now filled database is refused, naming what
    // it holds, and changes nothing.
    let out = migrate(&data_dir, &target);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("already holds data") && stderr.contains("users: 4 rows"),
        "{stderr}"
    );
    let (_, tickets_now) = p.staff.get("/api/tickets").await;
    assert_eq!(tickets_now.as_array().unwrap().len(), 3, "{tickets_now}");
}

/// A SQLite database at another schema version than this pvce's is refused
/// before anything touches it (no PostgreSQL needed: the source is judged
/// first). Older: it stays older; newer: its history stays as it was.
#[tokio::test]
async fn a_source_at_another_schema_version_is_refused_untouched() {
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-")
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("data");
    let db = data_dir.join("pvce.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    process::add_user_on(
        &data_dir,
        &["--database-url".into(), sqlite_url.clone()],
        "test-mv-old",
        "admin",
        common::PASSWORD,
    );
    let build = pvce::db::schema_version();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&sqlite_url).await.unwrap();
    let history = |pool: sqlx::AnyPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // Nothing listens there: the source is refused before the target is reached.
    let nowhere = "postgres://nobody@127.0.0.1:1/none";
    let refused = |expected: String| {
        let out = migrate(&data_dir, nowhere);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
    };

    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(build)
        .execute(&pool)
        .await
        .unwrap();
    refused(format!(
        "the SQLite database is at schema version {}, this pvce at {build}: start this pvce version on it once",
        build - 1
    ));
    assert_eq!(history(pool.clone()).await, build - 1, "not migrated");

    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES ($1, 'from the future', '2030-01-01 00:00:00', 1, x'00', 0)",
    )
    .bind(build + 1)
    .execute(&pool)
    .await
    .unwrap();
    refused(format!(
        "at schema version {}, this pvce at {build}: a newer pvce wrote it",
        build + 1
    ));
    assert_eq!(history(pool.clone()).await, build + 1);
    pool.close().await;
}
