//! Service report benchmark: a quarter's report over a year of generated
//! records for 500 students (issue 14's target: under 2 s). Generates into a
//! fresh SQLite database (migrations applied): 500 students in 10 courses,
//! one VM each, 10 staff, 4 nodes; a year of tickets (6 per student), node
//! outages and VM start failures in the event log, per-minute node samples
//! for the whole year (4 × 525 600 rows — more than pvce keeps, a worst
//! case) and per-minute VM samples with the matching power history (every
//! VM used 90 minutes a week).
//! Then times generating the report of the second quarter (loading the
//! records and computing every figure), its CSV and its PDF.
//!
//! Run: `cargo bench --bench report_quarter`. Settings: PVCE_BENCH_STUDENTS
//! (default 500), PVCE_BENCH_RUNS (default 5).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use pvce::reports::{Period, Report, ReportState, Reports, csv_bytes, pdf};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

mod support;

use support::env_or;

fn ts(t: OffsetDateTime) -> String {
    pvce::db::format_time(t)
}

/// Inserts `rows` (already rendered SQL value tuples) in chunks.
async fn insert(pool: &pvce::db::Pool, head: &str, rows: &[String]) {
    let mut tx = pool.begin().await.unwrap();
    for chunk in rows.chunks(400) {
        let sql = format!("{head} VALUES {}", chunk.join(","));
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::main]
async fn main() {
    let students: usize = env_or("PVCE_BENCH_STUDENTS", 500);
    let runs: usize = env_or("PVCE_BENCH_RUNS", 5);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let pool = pvce::db::connect(&url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(14);
    let year = datetime!(2026-01-01 00:00 UTC);
    let created = ts(year);
    let started = Instant::now();

    // People, courses, VMs, nodes.
    let id = |kind: &str, i: usize| format!("00000000-0000-4000-8000-{kind}{i:07}");
    let mut users = vec![format!(
        "({}, 'admin', 'Admin', 'admin', 'x', {})",
        q(&id("00000", 0)),
        q(&created)
    )];
    for i in 0..10 {
        users.push(format!(
            "({}, 'staff{i}', '工程师{i}', 'staff', 'x', {})",
            q(&id("00001", i)),
            q(&created)
        ));
        users.push(format!(
            "({}, 'teacher{i}', 'Teacher {i}', 'teacher', 'x', {})",
            q(&id("00002", i)),
            q(&created)
        ));
    }
    for i in 0..students {
        users.push(format!(
            "({}, 's{i}', 'Student {i}', 'student', 'x', {})",
            q(&id("00003", i)),
            q(&created)
        ));
    }
    insert(
        &pool,
        "INSERT INTO users (id, username, display_name, role, password_hash, created_at)",
        &users,
    )
    .await;
    let tpl = id("00004", 0);
    sqlx::query("INSERT INTO templates (id, name, os, state, size_bytes, created_at) VALUES ($1, 'bench', 'linux', 'ready', 1073741824, $2)")
        .bind(&tpl).bind(&created).execute(&pool).await.unwrap();
    let nodes: Vec<String> = (0..4).map(|i| id("00005", i)).collect();
    for (i, n) in nodes.iter().enumerate() {
        sqlx::query("INSERT INTO nodes (id, name, uri, console_address, created_at) VALUES ($1, $2, $3, '127.0.0.1', $4)")
            .bind(n).bind(format!("node{i}")).bind(format!("qemu+tcp://10.0.0.{i}/system")).bind(&created)
            .execute(&pool).await.unwrap();
    }
    let (mut courses, mut specs, mut vms, mut enrol) = (vec![], vec![], vec![], vec![]);
    for c in 0..10 {
        courses.push(format!(
            "({}, 'CS{c:03}', 'Course {c}', {}, {})",
            q(&id("00006", c)),
            q(&id("00002", c)),
            q(&created)
        ));
        specs.push(format!(
            "({}, {}, 'linux', {}, 1, 512, 0)",
            q(&id("00007", c)),
            q(&id("00006", c)),
            q(&tpl)
        ));
    }
    for s in 0..students {
        let c = s % 10;
        enrol.push(format!(
            "({}, {}, {})",
            q(&id("00006", c)),
            q(&id("00003", s)),
            q(&created)
        ));
        vms.push(format!(
            "({}, 'linux', {}, {}, {}, {}, 'stopped', 1, 512, 'x', {})",
            q(&id("00008", s)),
            q(&id("00006", c)),
            q(&id("00007", c)),
            q(&id("00003", s)),
            q(&tpl),
            q(&created)
        ));
    }
    insert(
        &pool,
        "INSERT INTO courses (id, code, name, teacher_id, created_at)",
        &courses,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO vm_specs (id, course_id, name, template_id, vcpus, memory_mib, position)",
        &specs,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO enrolments (course_id, user_id, created_at)",
        &enrol,
    )
    .await;
    insert(&pool, "INSERT INTO vms (id, name, course_id, spec_id, owner_id, template_id, state, vcpus, memory_mib, overlay_path, created_at)", &vms).await;

    // A year of tickets.
    let minutes_in_year = 365 * 24 * 60;
    let mut tickets = Vec::new();
    for n in 0..students * 6 {
        let at = year + Duration::minutes(rng.gen_range(0..minutes_in_year));
        let kind = ["incident", "incident", "request", "complaint"][rng.gen_range(0..4)];
        let priority = ["P1", "P2", "P3", "P3", "P4"][rng.gen_range(0..5)];
        let channel = ["web", "web", "phone", "email", "walk_in"][rng.gen_range(0..5)];
        let responded = at + Duration::minutes(rng.gen_range(1..600));
        let resolved = (rng.gen_range(0..100) < 85)
            .then(|| responded + Duration::minutes(rng.gen_range(30..5000)));
        let closed = resolved
            .filter(|_| rng.gen_range(0..100) < 80)
            .map(|r| r + Duration::hours(4));
        let rating = closed
            .filter(|_| rng.gen_range(0..100) < 80)
            .map(|_| rng.gen_range(1..=5));
        let state = match (resolved, closed) {
            (_, Some(_)) => "closed",
            (Some(_), None) => "resolved",
            _ => "in_progress",
        };
        let opt = |t: Option<OffsetDateTime>| t.map_or("NULL".into(), |t| q(&ts(t)));
        tickets.push(format!(
            "({}, {n}, '{kind}', {}, 'generated', '{state}', '{priority}', 'user', 'not_blocking', '{channel}', {r}, {r}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            q(&format!("00000000-0000-4000-9000-{n:012}")),
            q(&format!("工单 {n}")),
            q(&id("00001", rng.gen_range(0..10))),
            q(&ts(at)), q(&ts(at)), q(&ts(responded)), opt(resolved), opt(closed),
            resolved.map_or("NULL".into(), |_| q("处理完成")),
            rating.map_or("NULL".into(), |r: i64| r.to_string()),
            i64::from(rng.gen_range(0..100) < 8),
            r = q(&id("00003", rng.gen_range(0..students))),
        ));
    }
    insert(&pool, "INSERT INTO tickets (id, number, kind, title, description, state, priority, impact, urgency, channel, reporter_id, created_by, assignee_id, created_at, updated_at, responded_at, resolved_at, closed_at, resolution, rating, reopen_count)", &tickets).await;

    // The event log: 20 outages per node, 1000 start failures.
    let mut events = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..20 {
            let down = year + Duration::minutes(rng.gen_range(0..minutes_in_year));
            let up = down + Duration::minutes(rng.gen_range(5..120));
            for (at, kind) in [(down, "node_down"), (up, "node_up")] {
                events.push(format!(
                    "({}, '{kind}', {}, 'node{i}', 'generated')",
                    q(&ts(at)),
                    q(n)
                ));
            }
        }
    }
    for _ in 0..1000 {
        let at = year + Duration::minutes(rng.gen_range(0..minutes_in_year));
        let i = rng.gen_range(0..4);
        events.push(format!(
            "({}, 'vm_start_failed', {}, 'node{i}', 'generated')",
            q(&ts(at)),
            q(&nodes[i])
        ));
    }
    events.sort();
    insert(
        &pool,
        "INSERT INTO events (at, kind, node_id, node_name, message)",
        &events,
    )
    .await;

    // Per-minute samples: nodes all year, each VM 90 minutes a week.
    let start = year.unix_timestamp();
    let mut node_rows = 0;
    for n in &nodes {
        let rows: Vec<String> = (0..minutes_in_year)
            .map(|m| {
                let vms = m / 7 % 60;
                format!(
                    "({}, {}, {:.1}, {}, 65536, {vms})",
                    q(n),
                    start + m * 60,
                    (m % 97) as f64,
                    8192 + vms * 512
                )
            })
            .collect();
        node_rows += rows.len();
        insert(&pool, "INSERT INTO node_samples_minute (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)", &rows).await;
    }
    let mut vm_rows = 0;
    for s in 0..students {
        let vm = id("00008", s);
        let node = &nodes[s % 4];
        let offset = rng.gen_range(0..(7 * 24 * 60 - 90));
        let rows: Vec<String> = (0..52)
            .flat_map(|w| (0..90).map(move |m| start + (w * 7 * 24 * 60 + offset + m) * 60))
            .map(|at| format!("({}, {at}, {}, 12.5, 512, 300)", q(&vm), q(node)))
            .collect();
        vm_rows += rows.len();
        insert(
            &pool,
            "INSERT INTO vm_samples_minute (vm_id, at, node_id, cpu_percent, mem_mib, rss_mib)",
            &rows,
        )
        .await;
    }
    // The same use as power history (what the report's VM hours read):
    // each VM on and off again once a week.
    let mut power_rows = 0;
    for s in 0..students {
        let vm = id("00008", s);
        let offset = rng.gen_range(0..(7 * 24 * 60 - 90));
        let rows: Vec<String> = (0..52)
            .flat_map(|w| {
                let on = year + Duration::minutes(w * 7 * 24 * 60 + offset);
                [(on, 1), (on + Duration::minutes(90), 0)]
            })
            .map(|(at, running)| format!("({}, {}, {running})", q(&vm), q(&ts(at))))
            .collect();
        power_rows += rows.len();
        insert(
            &pool,
            "INSERT INTO vm_power_log (vm_id, at, running)",
            &rows,
        )
        .await;
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    println!(
        "generated in {:.1} s: {students} students, {} tickets, {} events, {node_rows} node minutes, {vm_rows} VM minutes, {power_rows} power changes",
        started.elapsed().as_secs_f64(),
        tickets.len(),
        events.len()
    );

    // The second quarter's report, several times.
    let reports = Reports::new(pool.clone());
    let (from, to) = pvce::reports::period_range(
        Period::Quarter,
        Some(datetime!(2026-05-15 00:00 UTC)),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let mut times = Vec::new();
    let mut figures = None;
    for _ in 0..runs {
        let t = Instant::now();
        figures = Some(reports.generate(from, to, to).await.unwrap());
        times.push(t.elapsed().as_secs_f64());
    }
    let f = figures.unwrap();
    times.sort_by(f64::total_cmp);
    // The two halves once more, apart.
    let t = Instant::now();
    let records = pvce::reports::load(&pool, from, to).await.unwrap();
    let load_time = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = pvce::reports::figures::compute(
        &records,
        &pvce::desk::sla::Policy::default(),
        &pvce::desk::calendar::Calendar::default(),
        to,
    );
    let compute_time = t.elapsed().as_secs_f64();
    assert_eq!(again, f);
    println!(
        "of which: load {load_time:.3} s ({} tickets, {} events, {} node-hours, {} VM rows), compute {compute_time:.3} s",
        records.tickets.len(),
        records.events.len(),
        records.node_hours.len(),
        records.vm_usage.len()
    );
    let t = Instant::now();
    let csv = csv_bytes(&f);
    let csv_time = t.elapsed().as_secs_f64();
    let report = Report {
        id: uuid::Uuid::nil(),
        period: Period::Quarter,
        from: ts(from),
        to: ts(to),
        state: ReportState::Draft,
        sections: Some(f.clone()),
        texts: Default::default(),
        created_by: uuid::Uuid::nil(),
        created_at: ts(to),
        generated_at: ts(to),
        reviewed_at: None,
        published_at: None,
    };
    let t = Instant::now();
    let pdf = pdf::render(&report, &pdf::FontSource::system(), pdf::Lang::Zh).unwrap();
    let pdf_time = t.elapsed().as_secs_f64();
    println!(
        "quarter {} .. {}: {} tickets, {} VM hours, peak {} VMs",
        ts(from),
        ts(to),
        f.incidents.total,
        f.resources.vm_hours,
        f.resources.peak_concurrent_vms
    );
    println!(
        "generate (load + compute): min {:.3} s, median {:.3} s, max {:.3} s over {runs} runs (target < 2 s)",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    println!(
        "csv: {:.3} s ({} bytes); pdf (zh-CN, first, font read): {:.3} s ({} bytes)",
        csv_time,
        csv.len(),
        pdf_time,
        pdf.len()
    );
}
