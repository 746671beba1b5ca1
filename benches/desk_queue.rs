//! Service-desk benchmark (issue 13): a desk with 100,000 tickets, each
//! with a realistic timeline (reported, assigned, started, sometimes waiting,
//! resolved, closed; comments and work-log lines), spread over a year. Times
//! the first page of the staff queue with the filters the queue page offers
//! (open, state, priority, assignee, node, course) and `/api/desk/stats`
//! over a quarter, through the same service methods the handlers call
//! (`Desk::list`, `Desk::stats`: SLA clocks included), against real SQLite
//! in a temporary data directory. Prints p50/p99 per query.
//!
//! The data is written with bulk SQL in one transaction (the service's own
//! path would take an hour for 100,000 reports); the rows are the ones the
//! desk writes: the same columns, states, and `{from, to}` event data the
//! SLA clocks read.
//!
//! Run: `cargo bench --bench desk_queue`. Settings: PVCE_BENCH_TICKETS
//! (default 100000), PVCE_BENCH_REPS per query (default 200),
//! PVCE_BENCH_KEEP=1 keeps the data directory (to look at query plans).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use pvce::auth::Role;
use pvce::config::Config;
use pvce::desk::priority::Priority;
use pvce::desk::stats::{GroupBy, StatsQuery};
use pvce::desk::tickets::{Filter, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

mod support;

use support::{bench_user, env_or, percentile};

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total);
    for (v, w) in weighted {
        if n < *w {
            return v;
        }
        n -= w;
    }
    &weighted[0].0
}

#[tokio::main]
async fn main() {
    let tickets: usize = env_or("PVCE_BENCH_TICKETS", 100_000);
    let reps: usize = env_or("PVCE_BENCH_REPS", 200);
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-bench-")
        .tempdir()
        .unwrap();
    let config = Config::for_data_dir(dir.path().join("data"));
    let state = pvce::state::AppState::new(config).await.unwrap();
    let pool = state.pool.clone();
    let desk = state.desk.clone();

    let admin = bench_user(&pool, "bench-admin", Role::Admin).await;
    let mut staff = Vec::new();
    for i in 0..20 {
        staff.push(bench_user(&pool, &format!("bench-staff{i}"), Role::Staff).await);
    }
    let student = bench_user(&pool, "bench-student0", Role::Student).await;
    // 2,000 reporters, sharing the first one's password hash.
    let t0 = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    let mut reporters = vec![student.id];
    for i in 1..2000 {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_at)
             SELECT $1, $2, '', 'student', password_hash, created_at FROM users WHERE id = $3",
        )
        .bind(id.to_string())
        .bind(format!("bench-student{i}"))
        .bind(student.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
        reporters.push(id);
    }

    let nodes: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let courses: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();
    let mut rng = StdRng::seed_from_u64(13);
    let now = time::OffsetDateTime::now_utc();
    let year = 365 * 86_400;
    let mut events = 0usize;
    for n in 0..tickets {
        let id = Uuid::new_v4().to_string();
        let created = now - time::Duration::seconds(rng.gen_range(0..year));
        let at = |secs: i64| pvce::db::format_time(created + time::Duration::seconds(secs));
        // Old tickets are finished; recent ones are spread over every state.
        let age_days = (now - created).whole_days();
        let state = if age_days > 14 {
            *pick(
                &mut rng,
                &[
                    ("closed", 95),
                    ("resolved", 2),
                    ("waiting", 1),
                    ("in_progress", 2),
                ],
            )
        } else {
            *pick(
                &mut rng,
                &[
                    ("new", 10),
                    ("assigned", 15),
                    ("in_progress", 20),
                    ("waiting", 10),
                    ("resolved", 20),
                    ("closed", 25),
                ],
            )
        };
        let priority = *pick(&mut rng, &[("P1", 2), ("P2", 10), ("P3", 60), ("P4", 28)]);
        let kind = *pick(
            &mut rng,
            &[("incident", 85), ("request", 13), ("complaint", 2)],
        );
        let channel = *pick(
            &mut rng,
            &[("web", 80), ("phone", 10), ("email", 5), ("walk_in", 5)],
        );
        let reporter = reporters[rng.gen_range(0..reporters.len())].to_string();
        let assignee =
            (state != "new").then(|| staff[rng.gen_range(0..staff.len())].id.to_string());
        let node = rng
            .gen_bool(0.8)
            .then(|| nodes[rng.gen_range(0..nodes.len())].to_string());
        let course = rng
            .gen_bool(0.7)
            .then(|| courses[rng.gen_range(0..courses.len())].to_string());
        let respond = rng.gen_range(60..4 * 3600);
        let resolve = respond + rng.gen_range(600..3 * 86_400);
        let close = resolve + rng.gen_range(3600..7 * 86_400);
        let done = matches!(state, "resolved" | "closed");
        let rating = (state == "closed" && rng.gen_bool(0.6)).then(|| rng.gen_range(1..=5));
        sqlx::query(
            "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact, urgency,
                 channel, reporter_id, created_by, assignee_id, vm_id, node_id, course_id, context,
                 created_at, updated_at, responded_at, resolved_at, closed_at, resolution, rating,
                 reopen_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'one_user', 'blocked', $8, $9, $10, $11, $12, $13, $14, '{}', $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(&id)
        .bind(n as i64 + 1)
        .bind(kind)
        .bind(format!("The VM does not start ({n})"))
        .bind("It stops at the boot screen after the update.")
        .bind(state)
        .bind(priority)
        .bind(channel)
        .bind(&reporter)
        .bind(&reporter)
        .bind(&assignee)
        .bind(Uuid::new_v4().to_string())
        .bind(&node)
        .bind(&course)
        .bind(at(0))
        .bind(at(if done { close } else { respond }))
        .bind((state != "new").then(|| at(respond)))
        .bind(done.then(|| at(resolve)))
        .bind((state == "closed").then(|| at(close)))
        .bind(done.then_some("Restarted the node's display service."))
        .bind(rating)
        .bind(i64::from(rng.gen_bool(0.05)))
        .execute(&mut *tx)
        .await
        .unwrap();
        // The timeline: what the desk writes for each step.
        let mut steps: Vec<(i64, &str, Option<String>, Option<&str>)> =
            vec![(0, "created", None, None)];
        let path: &[&str] = match state {
            "new" => &[],
            "assigned" => &["assigned"],
            "in_progress" => &["assigned", "in_progress"],
            "waiting" => &["assigned", "in_progress", "waiting"],
            "resolved" => &["assigned", "in_progress", "resolved"],
            _ => &["assigned", "in_progress", "resolved", "closed"],
        };
        let mut from = "new";
        for (i, to) in path.iter().enumerate() {
            let t = match *to {
                "assigned" => respond / 2,
                "in_progress" => respond,
                "resolved" => resolve,
                "closed" => close,
                _ => respond + 600,
            };
            steps.push((
                t,
                "state",
                Some(format!("{{\"from\":\"{from}\",\"to\":\"{to}\"}}")),
                None,
            ));
            if i == 1 {
                steps.push((t + 60, "comment", None, Some("Looking at it now.")));
                steps.push((
                    t + 120,
                    "worklog",
                    None,
                    Some("Checked the node's libvirt log."),
                ));
            }
            from = to;
        }
        for (t, k, data, text) in steps {
            sqlx::query(
                "INSERT INTO ticket_events (ticket_id, at, actor_id, kind, internal, text, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(at(t))
            .bind(assignee.as_deref().unwrap_or(&reporter))
            .bind(k)
            .bind(k == "worklog")
            .bind(text)
            .bind(data)
            .execute(&mut *tx)
            .await
            .unwrap();
            events += 1;
        }
    }
    tx.commit().await.unwrap();
    // No ANALYZE: the server never runs it, so neither does the bench.
    println!(
        "desk benchmark: {tickets} tickets, {events} timeline events, written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let me = &staff[0];
    let filters: Vec<(&str, Filter)> = vec![
        (
            "queue: open",
            Filter {
                open: Some(true),
                ..Filter::default()
            },
        ),
        ("queue: everything", Filter::default()),
        (
            "queue: state=new",
            Filter {
                state: Some(State::New),
                ..Filter::default()
            },
        ),
        (
            "queue: state=closed",
            Filter {
                state: Some(State::Closed),
                ..Filter::default()
            },
        ),
        (
            "queue: open, priority=P1",
            Filter {
                open: Some(true),
                priority: Some(Priority::P1),
                ..Filter::default()
            },
        ),
        (
            "queue: open, assignee=me",
            Filter {
                open: Some(true),
                assignee_id: Some(me.id.to_string()),
                ..Filter::default()
            },
        ),
        (
            "queue: unassigned",
            Filter {
                assignee_id: Some("none".into()),
                ..Filter::default()
            },
        ),
        (
            "queue: node",
            Filter {
                node_id: Some(nodes[3]),
                ..Filter::default()
            },
        ),
        (
            "queue: open, course",
            Filter {
                open: Some(true),
                course_id: Some(courses[7]),
                ..Filter::default()
            },
        ),
    ];
    println!(
        "{:<32} {:>6} {:>9} {:>9}",
        "query (first page, 200 rows)", "rows", "p50 ms", "p99 ms"
    );
    for (name, f) in &filters {
        let rows = desk.list(me, f).await.unwrap().len();
        let mut ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let got = desk.list(me, f).await.unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(got.len(), rows);
        }
        println!(
            "{name:<32} {rows:>6} {:>9.2} {:>9.2}",
            percentile(&mut ms, 0.5),
            percentile(&mut ms, 0.99)
        );
    }
    let quarter = StatsQuery {
        from: Some(pvce::db::format_time(now - time::Duration::days(91))),
        to: Some(pvce::db::format_time(now)),
        group_by: Some(GroupBy::Week),
    };
    let s = desk.stats(&admin, &quarter).await.unwrap();
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        desk.stats(&admin, &quarter).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{:<32} {:>6} {:>9.2} {:>9.2}",
        "stats: a quarter, by week",
        s.total,
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99)
    );
    if std::env::var_os("PVCE_BENCH_KEEP").is_some() {
        println!("data kept in {}", dir.keep().display());
    }
}
