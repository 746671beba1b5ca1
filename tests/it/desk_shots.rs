//! Screenshots taken for a report that was never sent (the reporter left,
//! the server was killed) do not stay forever: the desk's pass drops them
//! after a day, and removes files no row names once they are as old, while
//! a screenshot attached to a ticket and a fresh one stay. Driven with the
//! pass's `now`, not sleeps.

use std::path::Path;

use crate::common::TestEnv;
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

fn png(dir: &Path, sha: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{sha}.png"));
    std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    p
}

#[tokio::test]
async fn unattached_screenshots_and_stray_files_are_swept_after_a_day() {
    let env = TestEnv::start().await;
    let student = env.user("test-shots-student", Role::Student).await;
    let reporter = env.client("test-shots-student").await;
    let pool = &env.server.state.pool;
    let desk = env.server.state.desk.clone();
    let dir = env.data_dir().join("desk").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let sha = |c: char| c.to_string().repeat(64);

    let (s, t) = reporter
        .post(
            "/api/tickets",
            json!({"kind": "incident", "title": "test shots"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let ticket = t["id"].as_str().unwrap().to_owned();
    let user = student["id"].as_str().unwrap();
    let vm = uuid::Uuid::new_v4().to_string();
    // (file, row taken this long ago, attached to the ticket)
    let rows = [
        ('a', Some(48), false), // left two days ago: goes
        ('b', Some(1), false),  // an hour old: stays for now
        ('c', Some(72), true),  // sent with the report: stays
        ('d', None, false),     // a file no row names (server killed): goes once old
    ];
    let mut paths = std::collections::HashMap::new();
    for (c, age, attached) in rows {
        paths.insert(c, png(&dir, &sha(c)));
        let Some(hours) = age else { continue };
        sqlx::query(
            "INSERT INTO desk_screenshots (id, sha256, bytes, taken_by, vm_id, taken_at, ticket_id)
             VALUES ($1, $2, 20, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(sha(c))
        .bind(user)
        .bind(&vm)
        .bind(pvce::db::format_time(now - time::Duration::hours(hours)))
        .bind(attached.then_some(ticket.as_str()))
        .execute(pool)
        .await
        .unwrap();
        if attached {
            sqlx::query("UPDATE tickets SET screenshot = $1 WHERE id = $2")
                .bind(sha(c))
                .bind(&ticket)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let tmp = dir.join(format!(".{}.x.tmp", sha('e')));
    std::fs::write(&tmp, b"half").unwrap();
    let count = |c: char| {
        let sha = sha(c);
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM desk_screenshots WHERE sha256 = $1")
                .bind(sha)
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };

    // Now: only the two-day-old unsent one goes; the stray file and the
    // temporary are fresh (a capture may be writing them).
    assert_eq!(desk.sweep_screenshots(now).await.unwrap(), (1, 0));
    assert_eq!(count('a').await, 0);
    assert!(!paths[&'a'].exists());
    for c in ['b', 'c', 'd'] {
        assert!(paths[&c].exists(), "{c} stays");
    }
    assert!(tmp.exists());
    assert_eq!(count('b').await, 1);

    // A day and more later: the unsent hour-old one, the stray file and
    // the temporary go; the attached one stays and is still served.
    let later = now + time::Duration::hours(25);
    assert_eq!(desk.sweep_screenshots(later).await.unwrap(), (1, 2));
    assert_eq!(count('b').await, 0);
    for c in ['b', 'd'] {
        assert!(!paths[&c].exists(), "{c} goes");
    }
    assert!(!tmp.exists());
    assert!(paths[&'c'].exists());
    assert_eq!(count('c').await, 1);
    let (s, _) = reporter.get(&format!("/api/tickets/{ticket}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) =
        crate::common::get_bytes(&reporter, &format!("/api/tickets/{ticket}/screenshot")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.starts_with(b"\x89PNG"));
    // Nothing left to do: a second pass changes nothing.
    assert_eq!(desk.sweep_screenshots(later).await.unwrap(), (0, 0));
}
