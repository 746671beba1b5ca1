//! Alerts at levels and the daily inspection on the real server: samples
//! written to the real database, the alert loop ticked at the test's own
//! instants (the server's own loops are off), the desk incident a critical
//! alert opens, the rules' validation, and an inspection that passes, then
//! fails once the test breaks a template file in its own data dir; the
//! local node's clock skew measured through a probe volume that is gone
//! afterwards.

use crate::common::{TestEnv, assert_error, lab};
use pvce::alerts::samples::text_time;
use pvce::auth::Role;
use pvce::daily::TimeOfDay;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A server whose alert loop and inspection schedule are off: the test
/// drives them with its own clock.
pub async fn env() -> TestEnv {
    TestEnv::start_with(|c| {
        c.alert_interval_secs = 0;
        c.inspection_at = TimeOfDay(None);
    })
    .await
}

async fn memory_sample(env: &TestEnv, node: &str, at: i64, used_pct: i64) {
    sqlx::query(
        "INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
         VALUES ($1, $2, 5.0, $3, 1000, 0)",
    )
    .bind(node)
    .bind(at)
    .bind(used_pct * 10)
    .execute(&env.server.state.pool)
    .await
    .unwrap();
}

/// Writes one sample a minute from `from` for `minutes`, ticking after each.
async fn feed(env: &TestEnv, node: &str, from: i64, minutes: i64, used_pct: i64) {
    for m in 0..minutes {
        let at = from + m * 60;
        memory_sample(env, node, at, used_pct).await;
        env.server.state.alerts.tick(at).await.unwrap();
    }
}

/// Fires a critical memory alert on the local node (at instants ten days
/// ahead); its id.
pub async fn fire_memory_alert(env: &TestEnv, admin: &crate::common::Client) -> String {
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 10 * 24 * 60) * 60;
    feed(env, &node, t0, 6, 98).await;
    let list = memory_alerts(admin).await;
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]["id"].as_str().unwrap().to_owned()
}

async fn memory_alerts(client: &crate::common::Client) -> Vec<Value> {
    let (s, list) = client.get("/api/alerts?rule=node_memory&state=all").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_memory_alert_fires_critical_opens_an_incident_is_acknowledged_and_resolves() {
    let env = env().await;
    env.user("test-al-admin", Role::Admin).await;
    env.user("test-al-staff", Role::Staff).await;
    env.user("test-al-student", Role::Student).await;
    let admin = env.client("test-al-admin").await;
    let staff = env.client("test-al-staff").await;
    let student = env.client("test-al-student").await;
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    // Ten days ahead: nothing the server's own sampler writes is there.
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 10 * 24 * 60) * 60;

    // 98 % memory: critical (97 %) after the rule's 5-minute hold, not before.
    feed(&env, &node, t0, 5, 98).await;
    assert!(memory_alerts(&staff).await.is_empty());
    feed(&env, &node, t0 + 300, 2, 98).await;
    let list = memory_alerts(&staff).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let a = &list[0];
    assert_eq!(
        (
            a["level"].as_str(),
            a["state"].as_str(),
            a["cause"].as_str()
        ),
        (Some("critical"), Some("firing"), Some("threshold"))
    );
    assert_eq!(a["subject"], node.as_str());
    assert_eq!(a["started_at"], text_time(t0 + 300).as_str());
    assert_eq!(a["value"], 98.0);
    let id = a["id"].as_str().unwrap().to_owned();

    // The critical alert opened a system incident on the desk.
    let ticket = a["ticket_id"].as_str().expect("a desk incident").to_owned();
    let (s, t) = staff.get(&format!("/api/tickets/{ticket}")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let tk = if t["ticket"].is_object() {
        &t["ticket"]
    } else {
        &t
    };
    assert_eq!(tk["channel"], "system", "{t}");
    assert_eq!(tk["kind"], "incident", "{t}");

    // The desk hears of it through its notification channels: staff and
    // admins get an in-app notification that leads to the alerts page.
    env.server
        .state
        .notices
        .run_once(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let alert_notices = |page: &Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "alert")
            .cloned()
            .collect()
    };
    let (s, page) = staff.get("/api/me/notifications?lang=en").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let got = alert_notices(&page);
    assert_eq!(got.len(), 1, "{page}");
    assert!(got[0]["ticket_id"].is_null(), "{page}");
    assert_eq!(
        got[0]["subject"].as_str().unwrap(),
        format!(
            "[pvce] Alert (critical): node_memory on {}",
            a["subject_name"].as_str().unwrap_or_default()
        )
    );
    let (_, page) = admin.get("/api/me/notifications?lang=zh-CN").await;
    assert!(
        alert_notices(&page)[0]["subject"]
            .as_str()
            .unwrap()
            .contains("告警（严重）"),
        "{page}"
    );
    let (_, page) = student.get("/api/me/notifications").await;
    assert!(alert_notices(&page).is_empty(), "{page}");

    // Students and teachers do not see alerts.
    assert_error(
        &student.get("/api/alerts").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Staff acknowledge it; a second acknowledgement is refused.
    let (s, acked) = staff.post_empty(&format!("/api/alerts/{id}/ack")).await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "test-al-staff");
    assert_error(
        &staff.post_empty(&format!("/api/alerts/{id}/ack")).await,
        StatusCode::CONFLICT,
        "alert_not_open",
    );

    // Back to 50 %: resolved after the 5-minute clear time, not before.
    let calm = t0 + 420;
    feed(&env, &node, calm, 5, 50).await;
    assert_eq!(memory_alerts(&staff).await[0]["state"], "acknowledged");
    feed(&env, &node, calm + 300, 1, 50).await;
    let a = &memory_alerts(&staff).await[0];
    assert_eq!(a["state"], "resolved", "{a}");
    assert_eq!(a["resolved_at"], text_time(calm + 300).as_str());
    env.server
        .state
        .notices
        .run_once(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let (_, page) = staff.get("/api/me/notifications?lang=en").await;
    let subjects: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "alert")
        .filter_map(|n| n["subject"].as_str())
        .collect();
    assert!(
        subjects[0].starts_with("[pvce] Alert resolved: node_memory on "),
        "{subjects:?}"
    );
    assert_eq!(subjects.len(), 2, "fired and resolved: {subjects:?}");
    let kinds: Vec<&str> = a["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["fired", "acknowledged", "resolved"]);

    // Every transition is in the event log.
    let (_, events) = admin.get("/api/events?limit=500").await;
    let mine: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains(&id))
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        mine,
        ["alert_resolved", "alert_acknowledged", "alert_fired"],
        "{events}"
    );

    // It comes back: a new alert, which joins the incident still open.
    feed(&env, &node, calm + 360, 6, 99).await;
    let list = memory_alerts(&staff).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let again = list.iter().find(|a| a["state"] == "firing").unwrap();
    assert_eq!(again["ticket_id"], ticket.as_str());
    assert_ne!(again["id"], id.as_str());

    // The engine's memory survives a restart of the service: the open alert
    // is neither forgotten nor fired twice.
    let fresh = pvce::alerts::service::Alerts::new(
        env.server.state.pool.clone(),
        env.server.state.desk.clone(),
        env.data_dir(),
    );
    fresh.tick(calm + 720).await.unwrap();
    let list = memory_alerts(&staff).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        list.iter().filter(|a| a["state"] == "firing").count(),
        1,
        "{list:?}"
    );
}

#[tokio::test]
async fn alert_rules_are_validated_and_only_admins_change_them() {
    let env = env().await;
    env.user("test-ar-admin", Role::Admin).await;
    env.user("test-ar-staff", Role::Staff).await;
    let admin = env.client("test-ar-admin").await;
    let staff = env.client("test-ar-staff").await;
    let (s, rules) = staff.get("/api/alerts/rules").await;
    assert_eq!(s, StatusCode::OK, "{rules}");
    let ids: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"node_memory") && ids.contains(&"store_capacity"),
        "{ids:?}"
    );

    // Bad filters and bodies are 4xx JSON errors, never a 500.
    for q in [
        "?state=bogus",
        "?limit=0",
        "?limit=501",
        "?level=fatal",
        "?extra=1",
    ] {
        let got = staff.get(&format!("/api/alerts{q}")).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{q}: {got:?}");
        assert!(got.1["error"].is_string(), "{q}: {got:?}");
    }
    let (s, _) = staff.post_empty("/api/alerts/not-a-uuid/ack").await;
    assert!(s.is_client_error(), "{s}");
    let (s, _) = staff.post("/api/inspections", json!({"full": "yes"})).await;
    assert!(s.is_client_error(), "{s}");
    // Staff may read, not change.
    assert_error(
        &staff
            .send(Method::PUT, "/api/alerts/rules", Some(rules.clone()))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Levels out of order: 422 naming why.
    let mut bad = rules.clone();
    let mem = bad["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["id"] == "node_memory")
        .unwrap();
    mem["threshold"]["warning"] = json!(99.0);
    assert_error(
        &admin
            .send(Method::PUT, "/api/alerts/rules", Some(bad))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_alert_rules",
    );
    // An unknown field is refused, not ignored.
    let (s, _) = admin
        .send(
            Method::PUT,
            "/api/alerts/rules",
            Some(json!({"rules": [], "extra": 1})),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    // A good change is stored and used.
    let mut good = rules.clone();
    let mem = good["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["id"] == "node_memory")
        .unwrap();
    mem["threshold"]["warning"] = json!(60.0);
    mem["threshold"]["critical"] = json!(70.0);
    mem["policy"]["hold_secs"] = json!(0);
    let (s, saved) = admin
        .send(Method::PUT, "/api/alerts/rules", Some(good))
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    let (_, back) = staff.get("/api/alerts/rules").await;
    assert_eq!(back, saved);
    // 65 % is a warning now, at once (no hold).
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 20 * 24 * 60) * 60;
    feed(&env, &node, t0, 1, 65).await;
    let list = memory_alerts(&staff).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["level"], "warning");
    assert_eq!(list[0]["ticket_id"], Value::Null);
}

fn item<'a>(insp: &'a Value, check: &str, subject: &str) -> &'a Value {
    insp["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == check && i["subject"] == subject)
        .unwrap_or_else(|| panic!("no {check} item for {subject}: {insp}"))
}

#[tokio::test]
async fn an_inspection_passes_then_a_broken_template_fails_it_and_opens_a_ticket() {
    let env = env().await;
    env.user("test-in-admin", Role::Admin).await;
    env.user("test-in-staff", Role::Staff).await;
    env.user("test-in-teacher", Role::Teacher).await;
    let staff = env.client("test-in-staff").await;
    let teacher = env.client("test-in-teacher").await;
    let tpl = lab::import_tiny(&teacher, "test-in-tiny").await;
    let tpl_id = tpl["id"].as_str().unwrap().to_owned();

    let (s, first) = staff.post("/api/inspections", json!({"full": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["trigger"], "manual");
    assert_eq!(first["requested_by"], "test-in-staff");
    let failed: Vec<&Value> = first["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(first["failed"], 0);
    let node = item(&first, "node_reachable", "local");
    assert_eq!((&node["status"], &node["ok"]), (&json!("ok"), &json!(true)));
    // API.md's shape: `{id, at, checks: [{name, ok, detail}]}`.
    assert!(
        time::OffsetDateTime::parse(
            first["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{first}"
    );
    assert!(
        node["detail"].as_str().unwrap().starts_with("libvirt "),
        "{node}"
    );
    assert_eq!(item(&first, "database", "database")["status"], "ok");
    assert_eq!(
        item(&first, "template_checksum", "test-in-tiny")["status"],
        "ok"
    );
    assert_eq!(item(&first, "backup", "site")["status"], "not_checked");
    assert_eq!(item(&first, "clock_skew", "local")["status"], "ok");

    // Corrupt the template's file in this test's own data dir.
    let path = env
        .data_dir()
        .join("templates")
        .join(format!("{tpl_id}.qcow2"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    // And leave a file no template row names.
    let stray = env.data_dir().join("templates").join("test-stray.qcow2");
    std::fs::write(&stray, b"stray").unwrap();

    let (s, second) = staff.post("/api/inspections", json!({"full": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["failed"], 2, "{second}");
    let sum = item(&second, "template_checksum", "test-in-tiny");
    assert_eq!(
        (&sum["status"], &sum["ok"]),
        (&json!("failed"), &json!(false))
    );
    let files = item(&second, "template_files", "templates");
    assert_eq!(files["status"], "failed");
    assert!(
        files["detail"]
            .as_str()
            .unwrap()
            .contains("test-stray.qcow2"),
        "{files}"
    );
    let ticket = sum["ticket_id"].as_str().expect("a ticket").to_owned();
    let (s, t) = staff.get(&format!("/api/tickets/{ticket}")).await;
    assert_eq!(s, StatusCode::OK, "{t}");

    // Found again the next time: the same ticket, not a new one.
    let (_, third) = staff.post("/api/inspections", json!({"full": true})).await;
    assert_eq!(
        item(&third, "template_checksum", "test-in-tiny")["ticket_id"],
        ticket.as_str()
    );

    // The history, newest first, and one inspection in full.
    let (s, history) = staff.get("/api/inspections").await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], first["id"].as_str().unwrap());
    let (s, one) = staff.get(&format!("/api/inspections/{}", ids[1])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["failed"], 2);
    assert_error(
        &staff.get("/api/inspections?limit=0").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &teacher.get("/api/inspections").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The schedule: due at the configured time once, then not again that day.
    let insp = &env.server.state.inspections;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let slot = pvce::inspection::schedule::last_slot(now + 86_400, 0);
    let ran = insp.run_if_due(slot, slot - 60, 0).await.unwrap();
    assert_eq!(
        ran.map(|i| i.trigger),
        Some(pvce::inspection::Trigger::Scheduled)
    );
    assert!(
        insp.run_if_due(slot + 60, slot - 60, 0)
            .await
            .unwrap()
            .is_none()
    );
    // The event log says an inspection failed.
    let admin = env.client("test-in-admin").await;
    let (_, events) = admin.get("/api/events").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "inspection_failed"),
        "{events}"
    );
}

/// The local node's clock is measured through a probe volume in the
/// template store pool, which no template has been copied into yet (the
/// check sets the pool up); the check passes and no probe is left behind.
#[tokio::test]
async fn the_local_nodes_clock_skew_is_measured_and_its_probe_removed() {
    let env = env().await;
    env.user("test-ck-staff", Role::Staff).await;
    let staff = env.client("test-ck-staff").await;
    let (s, insp) = staff.post("/api/inspections", json!({"full": false})).await;
    assert_eq!(s, StatusCode::CREATED, "{insp}");
    let clock = item(&insp, "clock_skew", "local");
    assert_eq!(
        (&clock["status"], &clock["ok"], &clock["ticket_id"]),
        (&json!("ok"), &json!(true), &Value::Null),
        "{clock}"
    );
    // Server and node share one kernel clock here: the skew is within the
    // measurement's own width, and that width is a local round trip.
    let skew = clock["clock"]["skew_ms"].as_i64().expect("skew_ms");
    let uncertainty = clock["clock"]["uncertainty_ms"]
        .as_i64()
        .expect("uncertainty_ms");
    assert!(skew.abs() < 2_000, "{clock}");
    assert!((5..1_000).contains(&uncertainty), "{clock}");
    assert!(skew.abs() <= uncertainty, "{clock}");
    assert!(
        clock["detail"].as_str().unwrap().starts_with("node clock "),
        "{clock}"
    );

    // Nothing left: neither a volume libvirt lists nor a file in the pool's
    // directory (the local node's store is the library directory).
    let state = &env.server.state;
    let node = state.nodes.list().await.unwrap().remove(0);
    let conn = state.nodes.conn(node.id).await.unwrap();
    let vols = conn
        .list_volumes(&state.names.template_pool)
        .await
        .unwrap()
        .expect("the inspection set the store pool up");
    assert!(
        !vols
            .iter()
            .any(|v| v.starts_with(pvce::libvirt::CLOCK_PROBE_PREFIX)),
        "{vols:?}"
    );
    let files: Vec<String> = std::fs::read_dir(env.data_dir().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with(pvce::libvirt::CLOCK_PROBE_PREFIX)),
        "{files:?}"
    );
}

/// The app's own loop ticks on the wall clock: with a one-second interval
/// it records the layer storage's use within a few seconds.
#[tokio::test]
async fn the_alert_loop_ticks_on_the_wall_clock() {
    let env = TestEnv::start_with(|c| {
        c.alert_interval_secs = 1;
        c.inspection_at = TimeOfDay(None);
    })
    .await;
    let pool = env.server.state.pool.clone();
    let started = time::OffsetDateTime::now_utc().unix_timestamp();
    let at: i64 = crate::common::wait_for(
        "the alert loop's first tick",
        std::time::Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, Option<i64>>(
                    "SELECT MAX(at) FROM alert_samples WHERE series = 'layer_storage'",
                )
                .fetch_one(&pool)
                .await
                .ok()
                .flatten()
            }
        },
    )
    .await;
    assert!(at >= started, "{at} {started}");
}

/// CPU far above what the same hour of the same weekday usually shows fires
/// by deviation from the baseline, though under every fixed threshold.
#[tokio::test]
async fn cpu_far_above_its_usual_hour_fires_by_deviation() {
    let env = env().await;
    env.user("test-dv-admin", Role::Admin).await;
    let admin = env.client("test-dv-admin").await;
    let (_, nodes) = admin.get("/api/nodes").await;
    let node = nodes[0]["id"].as_str().unwrap().to_owned();
    let pool = &env.server.state.pool;
    // An hour thirty days ahead, a minute in.
    let hour = (time::OffsetDateTime::now_utc().unix_timestamp() / 3600 + 30 * 24) * 3600;
    let t0 = hour + 60;
    // The past three weeks at this hour: about 20 % (the loop's own thinned
    // series, as it records it).
    let week = 7 * 24 * 3600;
    for (k, usual) in [(1, 20.0), (2, 22.0), (3, 21.0)] {
        for j in 0..6 {
            sqlx::query(
                "INSERT INTO alert_samples (series, subject, at, value) VALUES ('node_cpu_percent', $1, $2, $3)",
            )
            .bind(&node)
            .bind(hour - k * week + j * 600)
            .bind(usual)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    // Now 50 %: far under the 85 % threshold, 6 robust σ over the usual 21 %.
    for m in 0..=10 {
        let at = t0 + m * 60;
        sqlx::query(
            "INSERT INTO node_samples (node_id, at, cpu_percent, mem_used_mib, mem_total_mib, vms_running)
             VALUES ($1, $2, 50.0, 100, 1000, 0)",
        )
        .bind(&node)
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
        env.server.state.alerts.tick(at).await.unwrap();
        let (_, list) = admin.get("/api/alerts?rule=node_cpu").await;
        // The rule holds 10 minutes before firing.
        assert_eq!(
            list.as_array().unwrap().len(),
            usize::from(m == 10),
            "{m}: {list}"
        );
    }
    let (_, list) = admin.get("/api/alerts?rule=node_cpu").await;
    let a = &list[0];
    assert_eq!(
        (a["level"].as_str(), a["cause"].as_str()),
        (Some("warning"), Some("deviation")),
        "{a}"
    );
}

/// A node that stops answering: the node-down rule fires critical after its
/// one-minute hold and opens a desk incident on the node; once the node is
/// gone, the alert resolves after its two-minute clear time.
#[tokio::test]
async fn a_node_that_stops_answering_fires_node_down_on_a_desk_incident() {
    let env = env().await;
    env.user("test-nd-admin", Role::Admin).await;
    env.user("test-nd-staff", Role::Staff).await;
    let admin = env.client("test-nd-admin").await;
    let staff = env.client("test-nd-staff").await;
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO nodes (id, name, uri, console_address, state, created_at)
         VALUES ($1, 'test-nd-node', 'qemu+tls://127.0.0.1:9/system', '127.0.0.1', 'up', '2024-01-01T00:00:00Z')",
    )
    .bind(id.to_string())
    .execute(&env.server.state.pool)
    .await
    .unwrap();
    let nodes = &env.server.state.nodes;
    assert!(nodes.probe(id).await.is_err());
    let (_, node) = admin.get(&format!("/api/nodes/{id}")).await;
    assert_eq!(node["state"], "down", "{node}");

    let alerts = &env.server.state.alerts;
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    let down = |list: &Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == "node_down" && a["subject"] == id.to_string().as_str())
            .cloned()
            .collect()
    };
    alerts.tick(t0).await.unwrap();
    assert!(down(&staff.get("/api/alerts").await.1).is_empty());
    alerts.tick(t0 + 60).await.unwrap();
    let list = down(&staff.get("/api/alerts").await.1);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["level"], "critical");
    assert_eq!(list[0]["subject_name"], "test-nd-node");
    let ticket = list[0]["ticket_id"]
        .as_str()
        .expect("an incident")
        .to_owned();
    let (_, tickets) = staff.get(&format!("/api/tickets?node_id={id}")).await;
    let system: Vec<&Value> = tickets
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["channel"] == "system")
        .collect();
    assert_eq!(system.len(), 1, "{tickets}");
    assert_eq!(system[0]["id"], ticket.as_str());
    // The node's event log has the alert beside its node_down.
    let (_, events) = admin.get(&format!("/api/events?node_id={id}")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"alert_fired") && kinds.contains(&"node_down"),
        "{kinds:?}"
    );

    // The node is removed (which also stops its probes, so nothing races
    // the test): an alert whose subject is gone is observed clear and
    // resolves after the rule's clear time.
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(id.to_string())
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    alerts.tick(t0 + 120).await.unwrap();
    alerts.tick(t0 + 180).await.unwrap();
    assert_eq!(
        down(&staff.get("/api/alerts").await.1)[0]["state"],
        "firing"
    );
    alerts.tick(t0 + 240).await.unwrap();
    assert_eq!(
        down(&staff.get("/api/alerts").await.1)[0]["state"],
        "resolved"
    );
}

/// Writes `n` console sessions issued from `at_ms` a second apart, each
/// established and ended by `ended_by`.
async fn console_sessions(env: &TestEnv, at_ms: i64, n: i64, ended_by: &str) {
    for k in 0..n {
        let at = at_ms + k * 1000;
        sqlx::query(
            "INSERT INTO slo_console_sessions (id, vm_id, user_id, issued_ms, opened_ms, established_ms, ended_ms, ended_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(at)
        .bind(at + 50)
        .bind(at + 200)
        .bind(at + 30_000)
        .bind(ended_by)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    }
}

async fn alerts_of(client: &crate::common::Client, rule: &str) -> Vec<Value> {
    let (s, list) = client
        .get(&format!("/api/alerts?rule={rule}&state=all"))
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

#[tokio::test]
async fn console_errors_start_failures_and_slo_burn_fire_from_the_service_levels() {
    let env = env().await;
    env.user("test-alslo-admin", Role::Admin).await;
    let admin = env.client("test-alslo-admin").await;
    let alerts = &env.server.state.alerts;
    // Ten days ahead: the server's own records are not in the hour.
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 10 * 24 * 60) * 60;
    let ms = t0 * 1000;

    // Nothing recorded: an idle hour raises nothing.
    alerts.tick(t0 - 600).await.unwrap();
    for rule in ["console_errors", "start_failures", "slo_burn"] {
        assert!(alerts_of(&admin, rule).await.is_empty(), "{rule}");
    }

    // 1 console error in 20 sessions (5 %: warning from 2 %, critical from
    // 10 %); 1 failed start in 10 (10 %: warning from 5 %, critical 20 %).
    console_sessions(&env, ms - 1_200_000, 19, "user").await;
    console_sessions(&env, ms - 1_100_000, 1, "error").await;
    for k in 0..10 {
        let req = ms - 1_000_000 + k * 10_000;
        sqlx::query(
            "INSERT INTO slo_vm_starts (id, vm_id, user_id, requested_ms, outcome, error_code, running_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(req)
        .bind(if k == 0 { "failed" } else { "ok" })
        .bind((k == 0).then_some("node_unreachable"))
        .bind((k != 0).then_some(req + 8_000))
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    }
    // The rules' 5-minute hold: nothing at the first tick, firing after it.
    alerts.tick(t0).await.unwrap();
    assert!(alerts_of(&admin, "console_errors").await.is_empty());
    alerts.tick(t0 + 300).await.unwrap();
    let level = |list: &[Value], subject: &str| {
        let a = list
            .iter()
            .find(|a| a["subject"] == subject)
            .unwrap_or_else(|| panic!("no alert on {subject}: {list:?}"));
        (
            a["level"].as_str().unwrap().to_owned(),
            a["state"].as_str().unwrap().to_owned(),
            a["value"].as_f64().unwrap(),
        )
    };
    let c = alerts_of(&admin, "console_errors").await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(level(&c, "site"), ("warning".into(), "firing".into(), 5.0));
    let s = alerts_of(&admin, "start_failures").await;
    assert_eq!(level(&s, "site"), ("warning".into(), "firing".into(), 10.0));
    // Burn rates: 5 % errors of the 0.5 % allowed = 10 (warning from 6,
    // critical from 14.4); 10 % failed starts of the 1 % allowed = 10.
    let b = alerts_of(&admin, "slo_burn").await;
    let (l, st, v) = level(&b, "console_success");
    assert_eq!((l.as_str(), st.as_str()), ("warning", "firing"));
    assert!((v - 10.0).abs() < 1e-6, "{v}");
    let (l, _, v) = level(&b, "start_success");
    assert_eq!(l, "warning");
    assert!((v - 10.0).abs() < 1e-6, "{v}");
    // Every start reached `running` well within its 120 s target: no burn.
    assert!(b.iter().all(|a| a["subject"] != "start_p95"), "{b:?}");

    // Four more console errors: 5 of 24 (20.8 %) → critical, and the
    // console objective's burn (41.7) too; the critical alert opens a desk
    // incident.
    console_sessions(&env, ms + 60_000, 4, "error").await;
    alerts.tick(t0 + 360).await.unwrap();
    alerts.tick(t0 + 660).await.unwrap();
    let c = alerts_of(&admin, "console_errors").await;
    assert_eq!(c.len(), 1, "one alert, raised in level: {c:?}");
    let (l, _, v) = level(&c, "site");
    assert_eq!(l, "critical");
    assert!((v - 500.0 / 24.0).abs() < 1e-6, "{v}");
    assert!(c[0]["ticket_id"].is_string(), "{c:?}");
    let b = alerts_of(&admin, "slo_burn").await;
    let (l, _, v) = level(&b, "console_success");
    assert_eq!(l, "critical");
    assert!((v - 500.0 / 24.0 / 0.5).abs() < 1e-6, "{v}");
}
