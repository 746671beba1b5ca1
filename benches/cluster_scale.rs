//! Cluster scale: placement and reconcile on 1,000 nodes and 30,000 VMs, on
//! PostgreSQL and SQLite side by side (issue 17's "Benchmarks").
//!
//! What is written how:
//! - through pvce's own code: the schema (`db::connect` runs the
//!   migrations), one template (`templates::import_local_file`, a blank
//!   qcow2), the teacher, and 100 courses of one VM spec each
//!   (`courses::create`);
//! - in bulk SQL matching the schema: 1,000 node rows (what the node monitor
//!   writes: state, memory, CPUs, store figures; 2 % down, 2 % in
//!   maintenance, 5 % without the template and no room to receive it), 29
//!   more template rows and every node's `node_layers` (what the template
//!   stores record), 60 load samples per node, 30,000 students, their
//!   enrolments and 30,000 VM rows (a third running, spread over the up
//!   nodes). `courses::enrol` would make the same rows but also a qcow2
//!   overlay per VM (`qemu-img`, ~30,000 processes per backend): that is not
//!   what placement or reconcile read, so the overlay paths are left unmade.
//!   `nodes.register` probes each node over libvirt and one URI can only be
//!   registered once (`test:///default` is a single URI), so nodes are rows.
//!
//! (a) Placement decisions per second: every read a VM start makes before
//! it talks to libvirt (`VmManager::start_locked` in src/vms/lifecycle.rs),
//! in its order — the VM row, the archived-course check, the lab-network
//! flag (`labnets::course_has_lab_network`), the template chain
//! (`Stores::chain`), the spec's graphics and clipboard flags, the chain's
//! holders (`Stores::holders`), every node (`Nodes::list`), the memory
//! committed per node — then `Reservations::place` over the 1,000
//! candidates. `VmManager::candidates` and the other steps are private to
//! src/vms, so the queries of the private ones are repeated here verbatim
//! (marked); the public ones are called. Measured with 1 and 8 starts at
//! once (8: a server's database pool, src/db.rs).
//!
//! (b) One reconcile pass's database side (`VmManager::reconcile_once`):
//! `Nodes::list`, then for every node its rows query (as many nodes at once as the real pass: `RECONCILE_PARALLEL_NODES`; the query texts are the real ones, `vms::node_rows_sql`) — for an up
//! node the VMs recorded there or named by its domain listing (the listing is
//! what libvirt would answer in a steady state: the VMs recorded running
//! there), for a down node its active VMs not yet marked `node_down` — each
//! row decoded and its overlay stat'ed as `from_row` does, then the lab
//! network sweep (`LabNets::sweep`). The libvirt half (1,000 connections
//! listing their domains) is not measured: libvirt's `test:///default` is
//! one in-process driver that every connection shares, so 1,000 nodes
//! on it would each see every domain.
//!
//! PostgreSQL: `PVCE_BENCH_DATABASE_URL` (a cluster's base URL,
//! `postgres://user@host:port`), else the cluster `scripts/postgres.sh`
//! starts (or finds running); a database of its own is created and dropped.
//! Without either, only SQLite runs and the reason is printed.
//!
//! Run: `cargo bench --bench cluster_scale`. Settings: PVCE_SCALE_NODES
//! (1000), PVCE_SCALE_VMS (30000), PVCE_SCALE_SECS per placement run (10),
//! PVCE_SCALE_BACKENDS (`sqlite,postgres`); PVCE_SCALE_KEEP_DB=1 keeps the
//! PostgreSQL database (its URL is printed) to look at the plans.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvce::db::{self, Pool};
use pvce::nodes::Nodes;
use pvce::placement::{Candidate, Constraint, Policy, Reservations};
use pvce::stores::Stores;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use uuid::Uuid;

mod support;

use support::env_or;

const COURSES: usize = 100;
const EXTRA_TEMPLATES: usize = 29;
const SAMPLES_PER_NODE: usize = 60;
const VM_MIB: i64 = 2048;
/// Rows per bulk INSERT statement.
const BATCH: usize = 500;

/// The columns a VM row is read with (src/vms/model.rs `COLUMNS`, private
/// there; repeated verbatim).
const VM_COLUMNS: &str = "id, name, course_id, build_template_id, owner_id, template_id, node_id, state, node_down, vcpus, memory_mib, overlay_path, last_error, last_started_at, created_at, layer_storage, layer_node_id, layer_volume, layer_bytes, stop_deadline,
    (SELECT n.name FROM nodes n WHERE n.id = node_id) AS node_name,
    (SELECT t.name FROM templates t WHERE t.id = template_id) AS template_name";

/// What a run needs after the data is in.
struct Fixture {
    pool: Pool,
    nodes: Arc<Nodes>,
    stores: Arc<Stores>,
    labnets: pvce::labnets::LabNets,
    /// VMs a student could start now.
    stopped: Vec<Uuid>,
    /// Per up node, the VMs running there (its steady-state domain listing).
    running: HashMap<Uuid, Vec<Uuid>>,
    setup: Duration,
    _dir: tempfile::TempDir,
}

/// Multi-row INSERTs of `rows` (already SQL literals) into `head`.
async fn insert(pool: &Pool, head: &str, rows: &[String]) {
    for chunk in rows.chunks(BATCH) {
        sqlx::query(&format!("{head} VALUES {}", chunk.join(",")))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{head}: {e}"));
    }
}

async fn populate(url: &str, n_nodes: usize, n_vms: usize) -> Fixture {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-scale-")
        .tempdir()
        .unwrap();
    let storage = pvce::storage::Storage::open(&dir.path().join("data")).unwrap();
    let pool = db::connect(url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let now = db::now();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;

    // The template, through the import path.
    let template = support::blank_template(&pool, &storage, dir.path(), "64M").await;
    let nodes = Arc::new(Nodes::new(
        pool.clone(),
        Duration::from_secs(5),
        pvce::libvirt::AccelSetting::Auto,
    ));
    let stores = Arc::new(Stores::new(
        pool.clone(),
        storage.clone(),
        nodes.clone(),
        "test-pvce-scale-templates".into(),
    ));
    let chain = stores.chain(template.id).await.unwrap();
    let extra: Vec<Uuid> = (0..EXTRA_TEMPLATES).map(|_| Uuid::new_v4()).collect();
    insert(
        &pool,
        "INSERT INTO templates (id, name, os, state, size_bytes, virtual_size_bytes, created_at)",
        &extra
            .iter()
            .enumerate()
            .map(|(i, id)| {
                format!(
                    "('{id}', 'scale-t{i:02}', 'linux', 'ready', 1073741824, 10737418240, '{now}')"
                )
            })
            .collect::<Vec<_>>(),
    )
    .await;

    // Nodes, as the monitor leaves them.
    struct SimNode {
        id: Uuid,
        up: bool,
        usable: bool,
        mem_total: i64,
        mem_used: i64,
    }
    let mut sim = Vec::with_capacity(n_nodes);
    let mut layers = Vec::new();
    let mut samples = Vec::new();
    let mut events = Vec::new();
    for i in 0..n_nodes {
        let roll: f64 = rng.r#gen();
        let up = roll >= 0.02;
        let maintenance = (0.02..0.04).contains(&roll);
        let has_template = !(0.04..0.09).contains(&roll);
        let id = Uuid::from_u128((0x5ca1e_u128 << 64) | i as u128);
        if has_template {
            for l in &chain {
                layers.push(format!("('{id}', '{}', '{}', '{now}')", l.id, l.sha256));
            }
            for t in &extra {
                layers.push(format!("('{id}', '{t}', '{:064x}', '{now}')", t.as_u128()));
            }
        }
        let mem_total = [64, 128, 256, 512][rng.gen_range(0..4)] * 1024;
        for s in 0..SAMPLES_PER_NODE {
            let at = now_ms - (s as i64) * 5000;
            samples.push(format!(
                "('{id}', {at}, {:.1}, 2048, {mem_total}, 0)",
                rng.gen_range(0.0..90.0)
            ));
        }
        if i % 25 == 0 {
            events.push(format!(
                "('{now}', 'node_down', '{id}', 'node-{i:04}', 'connection refused')"
            ));
        }
        sim.push((
            SimNode {
                id,
                up,
                usable: up && !maintenance,
                mem_total,
                mem_used: 2048,
            },
            maintenance,
            has_template,
        ));
    }
    // Nodes' rows once their running VMs are known (their memory).
    let mut running: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut stopped = Vec::new();

    // Students, courses, enrolments, VMs.
    let (teacher, students) = support::teacher_and_students(&pool, n_vms).await;
    let student_ids: HashMap<String, String> =
        sqlx::query_as("SELECT username, id FROM users WHERE role = 'student'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut courses = Vec::with_capacity(COURSES);
    for c in 0..COURSES {
        courses.push(
            support::course(
                &pool,
                &teacher,
                &format!("SCALE{c:03}"),
                &[("vm".to_owned(), template.id)],
                VM_MIB,
            )
            .await,
        );
    }
    let usable: Vec<usize> = (0..n_nodes).filter(|&i| sim[i].0.usable).collect();
    let down: Vec<usize> = (0..n_nodes).filter(|&i| !sim[i].0.up).collect();
    let mut enrolments = Vec::with_capacity(n_vms);
    let mut vms = Vec::with_capacity(n_vms);
    let overlays = dir.path().join("data/overlays");
    for (k, name) in students.iter().enumerate() {
        let course = &courses[k % COURSES];
        let spec = &course.vm_specs[0];
        let owner = &student_ids[name];
        enrolments.push(format!("('{}', '{owner}', '{now}')", course.id));
        let vm = Uuid::new_v4();
        let overlay = overlays.join(format!("{vm}.qcow2"));
        // A third running (1 in 100 of those on a node that went down:
        // marked node_down by an earlier pass), the rest stopped.
        let (state, node, node_down) = if k % 3 == 0 {
            let i = if k % 300 == 0 && !down.is_empty() {
                down[rng.gen_range(0..down.len())]
            } else {
                usable[rng.gen_range(0..usable.len())]
            };
            let n = &mut sim[i].0;
            if n.up {
                n.mem_used += VM_MIB;
                running.entry(n.id).or_default().push(vm);
            }
            ("running", format!("'{}'", n.id), i64::from(!n.up))
        } else {
            stopped.push(vm);
            ("stopped", "NULL".to_owned(), 0)
        };
        vms.push(format!(
            "('{vm}', 'vm', '{}', '{}', '{owner}', '{}', {node}, '{state}', {node_down}, 1, {VM_MIB}, '{}', '{now}')",
            course.id,
            spec.id,
            template.id,
            overlay.display()
        ));
    }
    insert(
        &pool,
        "INSERT INTO nodes (id, name, uri, console_address, maintenance, state, cpus, mem_total_mib, mem_used_mib, last_seen, created_at, store_used_bytes, store_free_bytes)",
        &sim.iter()
            .enumerate()
            .map(|(i, (n, maintenance, has_template))| {
                format!(
                    "('{}', 'node-{i:04}', 'qemu+tls://node-{i:04}.sim.invalid/system', '10.{}.{}.2', {}, '{}', {}, {}, {}, '{now}', '{now}', 32212254720, {})",
                    n.id,
                    i / 250,
                    i % 250,
                    i64::from(*maintenance),
                    if n.up { "up" } else { "down" },
                    [16, 32, 64, 128][i % 4],
                    n.mem_total,
                    n.mem_used,
                    if *has_template { 500_000_000_000_i64 } else { 0 }
                )
            })
            .collect::<Vec<_>>(),
    )
    .await;
    insert(
        &pool,
        "INSERT INTO node_layers (node_id, template_id, sha256, verified_at)",
        &layers,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)",
        &samples,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO events (at, kind, node_id, node_name, message)",
        &events,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO enrolments (course_id, user_id, created_at)",
        &enrolments,
    )
    .await;
    insert(
        &pool,
        "INSERT INTO vms (id, name, course_id, spec_id, owner_id, template_id, node_id, state, node_down, vcpus, memory_mib, overlay_path, created_at)",
        &vms,
    )
    .await;
    if db::backend(&pool) == db::Backend::Postgres {
        // Fresh statistics, as autovacuum would have them on a live system.
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    }
    let labnets =
        pvce::labnets::LabNets::new(pool.clone(), nodes.clone(), "test-pvce-scale-".into());
    Fixture {
        pool,
        nodes,
        stores,
        labnets,
        stopped,
        running,
        setup: t0.elapsed(),
        _dir: dir,
    }
}

/// Time spent per step of a decision.
#[derive(Default, Clone)]
struct Steps([Duration; STEPS.len()]);

const STEPS: [&str; 8] = [
    "vm row",
    "course open + lab flag",
    "chain",
    "spec flags",
    "holders",
    "nodes.list",
    "committed",
    "place",
];

/// Every read a start makes before libvirt, and the decision; returns the
/// node chosen (or the refusal) and adds each step's time to `steps`.
async fn decide(
    fx: &Fixture,
    ledger: &Reservations,
    vm_id: Uuid,
    steps: &mut Steps,
) -> Result<Uuid, pvce::placement::PlacementError> {
    let pool = &fx.pool;
    let mut t = Instant::now();
    let mut lap = |steps: &mut Steps, i: usize| {
        steps.0[i] += t.elapsed();
        t = Instant::now();
    };
    // `load` (src/vms/model.rs), under the VM's lock.
    let row = sqlx::query(&format!("SELECT {VM_COLUMNS} FROM vms WHERE id = $1"))
        .bind(vm_id.to_string())
        .fetch_one(pool)
        .await
        .unwrap();
    let course = db::uuid(&row, "course_id").unwrap();
    let template = db::uuid(&row, "template_id").unwrap();
    let memory = u64::try_from(row.try_get::<i64, _>("memory_mib").unwrap()).unwrap();
    lap(steps, 0);
    // `require_open_course` (src/vms/mod.rs), then the lab-network flag.
    let archived: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT code, archived_at FROM courses WHERE id = $1 AND archived_at IS NOT NULL",
    )
    .bind(course.to_string())
    .fetch_optional(pool)
    .await
    .unwrap();
    assert!(archived.is_none());
    let lab = pvce::labnets::course_has_lab_network(pool, course)
        .await
        .unwrap();
    assert!(!lab);
    lap(steps, 1);
    let chain = fx.stores.chain(template).await.unwrap();
    lap(steps, 2);
    // `graphics_of`, `clipboard_agent_of` (src/vms/model.rs).
    let _graphics: Option<String> = sqlx::query_scalar(
        "SELECT s.graphics FROM vms v JOIN vm_specs s ON s.id = v.spec_id WHERE v.id = $1",
    )
    .bind(vm_id.to_string())
    .fetch_optional(pool)
    .await
    .unwrap();
    let _agent: Option<i64> = sqlx::query_scalar(
        "SELECT c.clipboard_agent FROM vms v JOIN courses c ON c.id = v.course_id WHERE v.id = $1",
    )
    .bind(vm_id.to_string())
    .fetch_optional(pool)
    .await
    .unwrap();
    lap(steps, 3);
    // `VmManager::candidates` (src/vms/lifecycle.rs).
    let (holders, chain_bytes) = fx.stores.holders(&chain).await.unwrap();
    lap(steps, 4);
    let nodes = fx.nodes.list().await.unwrap();
    lap(steps, 5);
    // `committed_mib` (src/vms/lifecycle.rs).
    let committed: HashMap<String, i64> = sqlx::query_as(
        "SELECT node_id, CAST(SUM(memory_mib) AS BIGINT) FROM vms WHERE node_id IS NOT NULL
         AND state IN ('starting', 'running', 'stopping') GROUP BY node_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    lap(steps, 6);
    let candidates: Vec<Candidate> = nodes
        .into_iter()
        .map(|n| {
            let promised = committed
                .get(&n.id.to_string())
                .map_or(0, |&m| u64::try_from(m).unwrap_or(0));
            n.candidate(&holders, chain_bytes, promised, None)
        })
        .collect();
    let placed = ledger
        .place(
            &candidates,
            memory,
            pvce::placement::DEFAULT_HOST_RESERVE_MIB,
            Policy::Spread,
            Constraint::Anywhere,
        )
        .map(|r| r.node_id());
    lap(steps, 7);
    placed
}

struct Placement {
    workers: usize,
    decisions: usize,
    refused: usize,
    elapsed: Duration,
    steps: Steps,
    latencies: Vec<Duration>,
}

/// `workers` starters deciding for random stopped VMs for `secs`.
async fn placement(fx: &Arc<Fixture>, workers: usize, secs: u64) -> Placement {
    let ledger = Arc::new(Reservations::default());
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (fx, ledger) = (fx.clone(), ledger.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64);
                let (mut steps, mut lat, mut refused) = (Steps::default(), Vec::new(), 0);
                while Instant::now() < until {
                    let vm = fx.stopped[rng.gen_range(0..fx.stopped.len())];
                    let t = Instant::now();
                    if decide(&fx, &ledger, vm, &mut steps).await.is_err() {
                        refused += 1;
                    }
                    lat.push(t.elapsed());
                }
                (steps, lat, refused)
            })
        })
        .collect();
    let mut out = Placement {
        workers,
        decisions: 0,
        refused: 0,
        elapsed: Duration::ZERO,
        steps: Steps::default(),
        latencies: Vec::new(),
    };
    for t in tasks {
        let (steps, lat, refused) = t.await.unwrap();
        for (a, b) in out.steps.0.iter_mut().zip(steps.0) {
            *a += b;
        }
        out.decisions += lat.len();
        out.latencies.extend(lat);
        out.refused += refused;
    }
    out.elapsed = t0.elapsed();
    out.latencies.sort();
    out
}

/// Decodes a VM row as `from_row` does (the columns it reads, and the
/// overlay's size from the file system); returns whether it is active.
fn decode(row: &db::Row) -> bool {
    let overlay = PathBuf::from(row.try_get::<String, _>("overlay_path").unwrap());
    let _bytes = std::fs::metadata(Path::new(&overlay)).map_or(0, |m| m.len());
    let _id = db::uuid(row, "id").unwrap();
    let _name: String = row.try_get("name").unwrap();
    let _node: Option<String> = row.try_get("node_name").unwrap();
    let _template: Option<String> = row.try_get("template_name").unwrap();
    let state: String = row.try_get("state").unwrap();
    state != "stopped"
}

/// One node's part of the pass: its rows query, each row decoded; the
/// number of active rows.
async fn node_rows(fx: &Fixture, node: &pvce::nodes::Node) -> Result<usize, sqlx::Error> {
    let rows = if node.state.is_up() {
        // `reconcile_node`: rows recorded on the node or named by its
        // domain listing.
        let listed: Vec<String> = fx
            .running
            .get(&node.id)
            .map(|v| v.iter().map(Uuid::to_string).collect())
            .unwrap_or_default();
        sqlx::query(&pvce::vms::node_rows_sql())
            .bind(node.id.to_string())
            .bind(serde_json::to_string(&listed).unwrap_or_default())
            .fetch_all(&fx.pool)
            .await?
    } else {
        // `mark_node_down`.
        sqlx::query(&pvce::vms::down_rows_sql())
            .bind(node.id.to_string())
            .fetch_all(&fx.pool)
            .await?
    };
    Ok(rows.iter().filter(|r| decode(r)).count())
}

/// One up node's query alone (nothing else using the pool), mean over the
/// first `n` up nodes.
async fn node_query_alone(fx: &Fixture, n: usize) -> Duration {
    let nodes = fx.nodes.list().await.unwrap();
    let up: Vec<_> = nodes.iter().filter(|n| n.state.is_up()).take(n).collect();
    let t = Instant::now();
    for node in &up {
        node_rows(fx, node).await.unwrap();
    }
    t.elapsed() / u32::try_from(up.len().max(1)).unwrap_or(1)
}

/// One pass's outcome.
struct Pass {
    elapsed: Duration,
    /// Active rows read (decoded) in the pass.
    rows: usize,
    /// Node queries that failed, and the first error.
    failed: usize,
    error: Option<String>,
    /// Each node's part (waiting for a pooled connection included), sorted.
    per_node: Vec<Duration>,
}

/// The database side of one `reconcile_once`. A node query that fails is
/// counted, not fatal: the real pass returns that error (`r?`) and the rows
/// of the remaining nodes go unreconciled until the next pass.
async fn reconcile_pass(fx: &Fixture) -> Pass {
    let t0 = Instant::now();
    let nodes = fx.nodes.list().await.unwrap();
    let passes = nodes.iter().map(|node| async move {
        let t = Instant::now();
        (node_rows(fx, node).await, t.elapsed())
    });
    // As many nodes at once as the real pass.
    let passes: Vec<_> = {
        use futures::StreamExt;
        futures::stream::iter(passes)
            .buffer_unordered(pvce::vms::RECONCILE_PARALLEL_NODES)
            .collect()
            .await
    };
    let mut pass = Pass {
        elapsed: Duration::ZERO,
        rows: 0,
        failed: 0,
        error: None,
        per_node: Vec::with_capacity(nodes.len()),
    };
    for (r, d) in passes {
        pass.per_node.push(d);
        match r {
            Ok(n) => pass.rows += n,
            Err(e) => {
                pass.failed += 1;
                pass.error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    fx.labnets.sweep().await.unwrap();
    pass.elapsed = t0.elapsed();
    pass.per_node.sort();
    pass
}

/// A PostgreSQL database of this run's own on the cluster at `base`,
/// dropped when this is dropped (also when the run panics), unless `keep`.
struct PgDatabase {
    base: String,
    name: String,
    keep: bool,
}

impl PgDatabase {
    async fn create(base: &str) -> Result<PgDatabase, sqlx::Error> {
        use sqlx::Connection;
        let name = format!("bench_pvce_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(PgDatabase {
            base: base.to_owned(),
            name,
            keep: false,
        })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // On a thread with a runtime of its own: dropped inside the bench's
        // runtime, which cannot be blocked on from within.
        let (admin, name) = (format!("{}/postgres", self.base), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the bench database {}", self.name);
        }
    }
}

/// The PostgreSQL cluster's base URL: `PVCE_BENCH_DATABASE_URL`, else the
/// one `scripts/postgres.sh` starts or finds; `Err` says why there is none.
fn postgres_base() -> Result<String, String> {
    if let Ok(u) = std::env::var("PVCE_BENCH_DATABASE_URL")
        && !u.trim().is_empty()
    {
        return Ok(u.trim().trim_end_matches('/').to_owned());
    }
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
        .output()
        .map_err(|e| format!("cannot run scripts/postgres.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/postgres.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with("postgres"))
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .ok_or_else(|| "scripts/postgres.sh printed no URL".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run_backend(label: &str, url: &str, n_nodes: usize, n_vms: usize, secs: u64) {
    let fx = Arc::new(populate(url, n_nodes, n_vms).await);
    let active: usize = fx.running.values().map(Vec::len).sum();
    println!(
        "\n{label}: {n_nodes} nodes, {n_vms} VMs ({active} running on up nodes), loaded in {:.1} s",
        fx.setup.as_secs_f64()
    );
    println!(
        "{:<22} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "placement", "decisions", "decisions/s", "p50 ms", "p99 ms", "refused"
    );
    let mut breakdown = None;
    for workers in [1, 8] {
        let p = placement(&fx, workers, secs).await;
        println!(
            "{:<22} {:>10} {:>12.1} {:>9.2} {:>9.2} {:>9}",
            format!("{} at once", p.workers),
            p.decisions,
            p.decisions as f64 / p.elapsed.as_secs_f64(),
            ms(support::pct(&p.latencies, 50.0)),
            ms(support::pct(&p.latencies, 99.0)),
            p.refused
        );
        if workers == 1 {
            breakdown = Some(p);
        }
    }
    if let Some(p) = breakdown {
        let per: Vec<String> = STEPS
            .iter()
            .zip(p.steps.0)
            .map(|(name, d)| format!("{name} {:.2}", ms(d) / p.decisions as f64))
            .collect();
        println!("  ms per decision (1 at once): {}", per.join(", "));
    }
    let mut passes = Vec::new();
    for _ in 0..5 {
        passes.push(reconcile_pass(&fx).await);
    }
    passes.sort_by_key(|p| p.elapsed);
    let median = &passes[2];
    println!(
        "reconcile pass, database side (5 passes): median {:.0} ms, min {:.0} ms, max {:.0} ms; {} active rows read; one node's query p50 {:.1} ms, max {:.0} ms (waiting for a pooled connection included)",
        ms(median.elapsed),
        ms(passes[0].elapsed),
        ms(passes[4].elapsed),
        median.rows,
        ms(support::pct(&median.per_node, 50.0)),
        ms(median.per_node.last().copied().unwrap_or_default()),
    );
    println!(
        "  one up node's query alone (one at a time, mean of 50): {:.1} ms",
        ms(node_query_alone(&fx, 50).await)
    );
    let failed: usize = passes.iter().map(|p| p.failed).sum();
    if failed > 0 {
        println!(
            "  {failed} node queries failed over the 5 passes ({} in the median pass): {}",
            median.failed,
            passes
                .iter()
                .find_map(|p| p.error.as_deref())
                .unwrap_or_default()
        );
    }
    fx.pool.close().await;
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pvce=warn")
        .try_init();
    let n_nodes: usize = env_or("PVCE_SCALE_NODES", 1000);
    let n_vms: usize = env_or("PVCE_SCALE_VMS", 30_000);
    let secs: u64 = env_or("PVCE_SCALE_SECS", 10);
    let backends: String = env_or("PVCE_SCALE_BACKENDS", "sqlite,postgres".to_owned());
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "cluster scale: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        support::loadavg()
    );
    rt.block_on(async {
        for backend in backends.split(',').map(str::trim) {
            match backend {
                "sqlite" => {
                    let dir = tempfile::Builder::new()
                        .prefix("test-pvce-scale-db-")
                        .tempdir()
                        .unwrap();
                    let url = format!("sqlite://{}", dir.path().join("pvce.db").display());
                    run_backend("SQLite", &url, n_nodes, n_vms, secs).await;
                }
                "postgres" => {
                    let base = match postgres_base() {
                        Ok(b) => b,
                        Err(why) => {
                            println!(
                                "\nPostgreSQL: skipped — {why}. Set PVCE_BENCH_DATABASE_URL=postgres://USER@HOST:PORT (a cluster this user may create databases on), or install the server (scripts/setup.sh) so scripts/postgres.sh can start one."
                            );
                            continue;
                        }
                    };
                    let mut database = match PgDatabase::create(&base).await {
                        Ok(d) => d,
                        Err(e) => {
                            println!("\nPostgreSQL: skipped — cannot create a database on {base}: {e}");
                            continue;
                        }
                    };
                    let server: String = {
                        use sqlx::Connection;
                        let mut c = sqlx::PgConnection::connect(&database.url()).await.unwrap();
                        sqlx::query_scalar("SHOW server_version")
                            .fetch_one(&mut c)
                            .await
                            .unwrap()
                    };
                    run_backend(
                        &format!("PostgreSQL {server}"),
                        &database.url(),
                        n_nodes,
                        n_vms,
                        secs,
                    )
                    .await;
                    if std::env::var_os("PVCE_SCALE_KEEP_DB").is_some() {
                        database.keep = true;
                        println!("kept the database {}", database.url());
                    }
                }
                other => panic!("unknown backend {other:?}: use sqlite and/or postgres"),
            }
        }
    });
}
