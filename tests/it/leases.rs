//! Background work runs once per cluster (src/lease.rs): every
//! cluster-wide loop has exactly one holder among the servers of one
//! database, a single server holds them all, and when the holder stops the
//! other server takes every lease over about one term later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestEnv, database, wait_for};

/// Loops every server runs itself (never leased).
const LOCAL: [&str; 4] = [
    "console_closer",
    "storage",
    "desk_watch",
    "node_capabilities",
];
/// Cluster-wide loops a test server always runs (the others depend on
/// settings the test config turns off, e.g. alerts and the inspection).
const CLUSTER_WIDE: [&str; 6] = [
    "node_monitor",
    "sampler",
    "reconciler",
    "desk",
    "audit_prune",
    "term",
];

/// The lease term the tests run with.
const TERM: Duration = Duration::from_secs(2);

async fn healthz(url: &str) -> Value {
    reqwest::get(format!("{url}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// (lease name → held here) of a `/healthz` answer.
fn held(h: &Value) -> BTreeMap<String, bool> {
    h["leases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["held"].as_bool().unwrap()))
        .collect()
}

/// The loops' lease rows, as the database has them (name → holder); not
/// the servers' presence rows (`server:…`, each its own server's).
async fn rows(env: &TestEnv) -> BTreeMap<String, String> {
    use sqlx::Row;
    sqlx::query("SELECT name, holder FROM leases WHERE name NOT LIKE 'server:%'")
        .fetch_all(&env.server.state.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("holder")))
        .collect()
}

fn short_term(config: &mut pvce::config::Config) {
    config.lease_term_secs = TERM.as_secs();
}

#[tokio::test]
async fn a_single_server_holds_every_cluster_wide_lease() {
    let env = TestEnv::start_with(short_term).await;
    let url = env.server.url();
    let h = wait_for("every lease held", Duration::from_secs(15), || async {
        let h = healthz(&url).await;
        held(&h).values().all(|h| *h).then_some(h)
    })
    .await;
    let me = h["server_id"].as_str().unwrap().to_owned();
    assert!(!me.is_empty());
    let leases = held(&h);
    for name in CLUSTER_WIDE {
        assert_eq!(leases.get(name), Some(&true), "{name}: {h}");
        assert_eq!(h["leases"][name]["holder"], me.as_str(), "{h}");
    }
    for name in LOCAL {
        assert!(!leases.contains_key(name), "{name} is leased: {h}");
        assert!(h["loops"].get(name).is_some(), "{name} does not run: {h}");
    }
    assert_eq!(h["status"], "ok", "{h}");
    // The database says the same: this server holds each row.
    let rows = rows(&env).await;
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        leases.keys().collect::<Vec<_>>()
    );
    assert!(rows.values().all(|holder| *holder == me), "{rows:?}");
    // And /metrics exports it.
    let metrics = reqwest::get(env.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in CLUSTER_WIDE {
        assert!(
            metrics.contains(&format!("pvce_lease_held{{name=\"{name}\"}} 1")),
            "{name}:\n{metrics}"
        );
    }
}

/// Two servers on one PostgreSQL database: each lease has one holder; the
/// holder stops, the other takes every lease over within a term and a
/// margin. Ignored in the SQLite run; scripts/test.sh's PostgreSQL phase
/// runs it (`--include-ignored`).
#[tokio::test]
#[ignore = "needs PostgreSQL: PVCE_TEST_DATABASE_URL and --include-ignored"]
async fn two_servers_share_the_leases_and_one_takes_over_when_the_other_stops() {
    assert!(
        std::env::var(database::ENV).is_ok_and(|u| !u.trim().is_empty()),
        "this test needs PostgreSQL: set {} to a cluster's base URL \
         (bash scripts/postgres.sh; PVCE_TEST_DATABASE_URL=$(cat target/pg/url))",
        database::ENV
    );
    let env = TestEnv::start_with(short_term).await;
    let other = env.start_another().await;
    let (a, b) = (env.server.url(), other.url());

    // Each lease: exactly one of the two holds it, and the other knows who.
    let (ha, hb) = wait_for("one holder per lease", Duration::from_secs(15), || async {
        let (ha, hb) = (healthz(&a).await, healthz(&b).await);
        let (la, lb) = (held(&ha), held(&hb));
        let settled = la.keys().eq(lb.keys())
            && la.iter().all(|(name, held_a)| {
                let holder = if *held_a { &ha } else { &hb };
                held_a != &lb[name]
                    && ha["leases"][name]["holder"] == holder["server_id"]
                    && hb["leases"][name]["holder"] == holder["server_id"]
            });
        settled.then_some((ha, hb))
    })
    .await;
    assert_ne!(ha["server_id"], hb["server_id"]);
    let (la, lb) = (held(&ha), held(&hb));
    for name in CLUSTER_WIDE {
        assert!(la.contains_key(name), "{name}: {ha}");
    }
    // The database has one row per lease, each naming the holder both see.
    let before = rows(&env).await;
    for (name, held_a) in &la {
        let holder = if *held_a { &ha } else { &hb };
        assert_eq!(
            before[name],
            holder["server_id"].as_str().unwrap(),
            "{name}"
        );
    }
    eprintln!("held by the first server: {la:?}\nby the second: {lb:?}");

    // The first server stops (as if killed: nothing released). The second
    // takes every lease over: at most one term after the first's last
    // renewal, plus scheduling slack.
    env.server.abort();
    let stopped = Instant::now();
    let hb = wait_for(
        "the second server to take every lease",
        TERM + Duration::from_secs(8),
        || async {
            let h = healthz(&b).await;
            held(&h).values().all(|h| *h).then_some(h)
        },
    )
    .await;
    let took = stopped.elapsed();
    eprintln!("taken over {took:?} after the first server stopped");
    assert!(took <= TERM + Duration::from_secs(2), "took {took:?}");
    let me = hb["server_id"].as_str().unwrap();
    assert!(rows(&env).await.values().all(|h| h == me));
    drop(other);
}

/// A restarted server (a new process id, its predecessor killed): on
/// SQLite it drops the leases the dead one left and runs every loop at
/// once; on PostgreSQL, where another live server could hold them, it
/// waits them out like any other server.
#[tokio::test]
async fn a_restarted_server_takes_its_predecessors_leases_at_once_on_sqlite_only() {
    let long = Duration::from_secs(60);
    let mut env = TestEnv::start_with(|c| c.lease_term_secs = long.as_secs()).await;
    let url = env.server.url();
    let before = wait_for("every lease held", Duration::from_secs(15), || async {
        let h = healthz(&url).await;
        held(&h).values().all(|h| *h).then_some(h)
    })
    .await;
    env.restart().await;
    let url = env.server.url();
    let after = healthz(&url).await;
    assert_ne!(after["server_id"], before["server_id"]);
    if std::env::var(database::ENV).is_ok_and(|u| !u.trim().is_empty()) {
        // PostgreSQL: still the dead server's until their term ends.
        let h = wait_for(
            "the new server to see the holder",
            Duration::from_secs(15),
            || async {
                let h = healthz(&url).await;
                h["leases"]["node_monitor"]["holder"]
                    .is_string()
                    .then_some(h)
            },
        )
        .await;
        assert_eq!(
            h["leases"]["node_monitor"]["holder"], before["server_id"],
            "{h}"
        );
        assert_eq!(h["leases"]["node_monitor"]["held"], false, "{h}");
    } else {
        // SQLite: at once, far within the 60 s term.
        wait_for(
            "every lease held after the restart",
            Duration::from_secs(15),
            || async {
                let h = healthz(&url).await;
                held(&h).values().all(|h| *h).then_some(h)
            },
        )
        .await;
    }
}

/// A rolling upgrade (src/upgrade.rs): a newer pvce migrates the database
/// (here: its migration row appears); this older server steps aside — its
/// health check answers 503 `outdated`, its API 503 `server_outdated`, it
/// lets every lease go — and another old server refuses to start against
/// that database, saying why. (When the row goes again the server resumes:
/// the check is a reading, not a latch.) On both databases.
#[tokio::test]
async fn an_older_server_steps_aside_when_a_newer_one_migrates_the_database() {
    let env = TestEnv::start_with(short_term).await;
    let url = env.server.url();
    env.user("test-admin", pvce::auth::Role::Admin).await;
    let admin = env.client("test-admin").await;
    wait_for("every lease held", Duration::from_secs(15), || async {
        held(&healthz(&url).await)
            .values()
            .all(|h| *h)
            .then_some(())
    })
    .await;
    let newer = pvce::db::schema_version() + 1;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'test: a newer pvce''s migration', TRUE, $2, 0)",
    )
    .bind(newer)
    .bind(vec![0u8; 48])
    .execute(&env.server.state.pool)
    .await
    .unwrap();

    let res = wait_for(
        "the server to step aside",
        Duration::from_secs(10),
        || async {
            let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
            (r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(r)
        },
    )
    .await;
    let h: Value = res.json().await.unwrap();
    assert_eq!(h["status"], "outdated", "{h}");
    assert!(
        h["reasons"].as_array().unwrap().iter().any(|r| r
            .as_str()
            .unwrap()
            .contains(&format!("schema version {newer}"))),
        "{h}"
    );
    let got = admin.get("/api/vms").await;
    crate::common::assert_error(
        &got,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "server_outdated",
    );
    // Every lease let go at its next renewal (a third of a term).
    wait_for("every lease let go", TERM * 2, || async {
        held(&healthz(&url).await)
            .values()
            .all(|h| !*h)
            .then_some(())
    })
    .await;

    // An old server does not start against the newer database.
    let config = (*env.server.state.config).clone();
    let err = pvce::app::start(config, "127.0.0.1:0")
        .await
        .expect_err("an older server must refuse a newer schema");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("migration {newer}")) && text.contains("newer pvce"),
        "{text}"
    );

    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newer)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    wait_for("the server to resume", Duration::from_secs(15), || async {
        let h = healthz(&url).await;
        (h["status"] != "outdated" && held(&h).values().all(|h| *h)).then_some(())
    })
    .await;
    let (s, v) = admin.get("/api/vms").await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
}

/// Start-up sweeps in a cluster (src/lease.rs `join`): a server starting
/// beside a live one leaves the shared data dir's "debris" alone — it may
/// be the other's upload in progress —; a server starting after the others
/// died (their presence no longer renewed) is alone and sweeps.
#[tokio::test]
#[ignore = "needs PostgreSQL: PVCE_TEST_DATABASE_URL and --include-ignored"]
async fn a_server_starting_beside_a_live_one_leaves_its_work_in_progress_alone() {
    assert!(
        std::env::var(database::ENV).is_ok_and(|u| !u.trim().is_empty()),
        "this test needs PostgreSQL (see scripts/postgres.sh)"
    );
    let env = TestEnv::start_with(short_term).await;
    let upload = env.data_dir().join("uploads").join("test-in-progress");
    std::fs::write(&upload, b"an upload another server is receiving").unwrap();

    let beside = env.start_another().await;
    assert!(upload.exists(), "a live server's upload was swept");

    // Every server gone: the first one killed, the second stopped cleanly.
    env.server.abort();
    beside.stop().await;
    let alone = env.start_another().await;
    assert!(
        !upload.exists(),
        "a server starting alone sweeps what the dead left"
    );
    drop(alone);
}
