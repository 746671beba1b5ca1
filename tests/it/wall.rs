//! The teacher's video wall and assist, black-box on the real local
//! libvirtd with the tiny guest (one VM test that checks several things):
//!
//! - a raised hand: only its owner raises it, the wall shows it first and
//!   filters on it, the teacher lowers it; students never see the wall;
//! - thumbnails are the real screen: a cleared console is (nearly) black,
//!   the thumbnail after the guest printed a marker on it is not; viewers
//!   within the cache's second share one screenshot;
//! - a view-only console (real RFB over the WebSocket): keys typed through
//!   it do not reach the guest, while the same keys through a console with
//!   control do; the student's assist state names the watcher and the mode;
//!   both opens are in the event log and the audit log with who;
//! - the teacher's own VM in the course, shown to the class: a student of
//!   the course gets a view-only token for it, and none once it stops.

use std::time::{Duration, Instant};

use crate::common::lab::course_with_student_vm;
use crate::common::{self, TestEnv, assert_error, wait_for};
use crate::console::{Rfb, connect};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Pixels of a PNG thumbnail that are not dark (any channel above 40):
/// text on the console, as opposed to a cleared screen.
fn lit_pixels(png_bytes: &[u8]) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert!(info.width <= 320, "a thumbnail is at most 320 wide");
    let px = &buf[..info.buffer_size()];
    let lit = px
        .chunks_exact(3)
        .filter(|p| p.iter().any(|&c| c > 40))
        .count();
    (lit, px.len() / 3)
}

async fn thumbnail(client: &common::Client, vm: &str) -> (StatusCode, Vec<u8>) {
    let res = client
        .request(reqwest::Method::GET, &format!("/api/vms/{vm}/thumbnail"))
        .send()
        .await
        .unwrap();
    let status = res.status();
    if status == StatusCode::OK {
        assert_eq!(res.headers()["content-type"], "image/png");
        assert_eq!(res.headers()["cache-control"], "no-store");
    }
    (status, res.bytes().await.unwrap().to_vec())
}

/// Types `text` (lowercase letters, digits, space, `/`: no Shift needed)
/// and Return as RFB KeyEvents (X keysyms).
async fn type_keys(rfb: &mut Rfb, text: &str) {
    let mut keys: Vec<u32> = text.bytes().map(u32::from).collect();
    keys.push(0xff0d); // Return
    for k in keys {
        for down in [1u8, 0] {
            let mut msg = vec![4, down, 0, 0];
            msg.extend_from_slice(&k.to_be_bytes());
            rfb.send(&msg).await;
        }
    }
}

/// A console session through the proxy, handshaken, with one whole frame
/// read: the node has processed everything sent on it before.
async fn session(env: &TestEnv, ticket: &Value) -> (Rfb, u16, u16, u8) {
    let token = ticket["token"].as_str().unwrap();
    let ws = connect(env, token, Some(&env.server.url())).await.unwrap();
    let mut rfb = Rfb {
        ws,
        buf: Vec::new(),
    };
    let (w, h, bpp, _) = rfb.handshake().await;
    rfb.full_frame(w, h, bpp).await;
    (rfb, w, h, bpp)
}

fn user_of(v: &Value) -> pvce::users::User {
    pvce::users::User {
        id: v["id"].as_str().unwrap().parse().unwrap(),
        username: v["username"].as_str().unwrap().into(),
        display_name: v["display_name"].as_str().unwrap_or_default().into(),
        role: Role::Teacher,
        disabled: false,
        must_change_password: false,
    }
}

#[tokio::test]
async fn wall_thumbnails_hands_view_only_and_presenting() {
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-wall1").await;
    let (alice, vm) = (lab.alice, lab.vm);
    let teacher = env.client("test-teacher").await;
    let bob = env.client("test-bob").await;
    env.user("test-wall-admin", Role::Admin).await;
    let admin = env.client("test-wall-admin").await;
    let (_, me) = teacher.get("/api/me").await;
    let teacher_user = user_of(&me["user"]);
    let (_, v) = alice.get(&format!("/api/vms/{vm}")).await;
    let course = v["course_id"].as_str().unwrap().to_owned();
    let wall = format!("/api/courses/{course}/wall");

    // ---- hands (no VM needs to run)
    assert_error(
        &bob.post_empty(&format!("/api/vms/{vm}/hand")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, a) = alice.post_empty(&format!("/api/vms/{vm}/hand")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let raised_at = a["hand_raised_at"].as_str().unwrap().to_owned();
    // Raising again keeps the first time.
    let (_, again) = alice.post_empty(&format!("/api/vms/{vm}/hand")).await;
    assert_eq!(again["hand_raised_at"], raised_at.as_str());
    assert_error(&alice.get(&wall).await, StatusCode::FORBIDDEN, "forbidden");
    let (s, w) = teacher.get(&format!("{wall}?hands=true")).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(
        (w["total"].as_u64(), w["hands"].as_u64()),
        (Some(2), Some(1))
    );
    let tiles = w["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 1, "only the raised hand: {w}");
    assert_eq!(tiles[0]["vm_id"], vm.as_str());
    assert_eq!(tiles[0]["owner_username"], "test-alice");
    assert!(tiles[0]["thumbnail_url"].is_null(), "stopped: no picture");
    assert_error(
        &teacher.get(&format!("/api/vms/{vm}/thumbnail")).await,
        StatusCode::CONFLICT,
        "vm_not_running",
    );

    // ---- start Alice's VM
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_serial(&env, &vm, "BOOT-OK", BOOT_TIMEOUT).await;
    let (_, w) = teacher.get(&format!("{wall}?running=true")).await;
    let tiles = w["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 1, "only the running VM: {w}");
    assert_eq!(
        tiles[0]["thumbnail_url"],
        format!("/api/vms/{vm}/thumbnail")
    );

    // ---- thumbnails of the real screen: cleared, then with a marker.
    common::serial_run(
        &env,
        &vm,
        "printf '\\033[2J\\033[H' > /dev/tty1; echo CLR-$((1+1))",
        "CLR-2",
    )
    .await;
    // Poll until a picture taken after the clear comes (the cache serves
    // one for up to a second): a cleared console is black but for a cursor.
    let (blank_lit, total) = wait_for("a blank thumbnail", Duration::from_secs(30), || async {
        let (s, png) = thumbnail(&teacher, &vm).await;
        assert_eq!(s, StatusCode::OK);
        let (lit, total) = lit_pixels(&png);
        (lit * 200 < total).then_some((lit, total))
    })
    .await;
    common::serial_run(
        &env,
        &vm,
        "yes WALL-MARKER-WALL-MARKER | head -n 30 > /dev/tty1; echo MRK-$((2+2))",
        "MRK-4",
    )
    .await;
    let marked = wait_for(
        "a thumbnail with the marker",
        Duration::from_secs(30),
        || async {
            let (_, png) = thumbnail(&teacher, &vm).await;
            let (lit, _) = lit_pixels(&png);
            (lit * 20 > total).then_some(lit)
        },
    )
    .await;
    eprintln!("thumbnail: {blank_lit} lit pixels blank, {marked} with the marker, of {total}");
    // The owner sees their own; another student does not.
    assert_eq!(thumbnail(&alice, &vm).await.0, StatusCode::OK);
    assert_eq!(thumbnail(&bob, &vm).await.0, StatusCode::NOT_FOUND);
    // Viewers within the cache's second share one screenshot.
    let wall_svc = &env.server.state.wall;
    let vm_id: uuid::Uuid = vm.parse().unwrap();
    let now = Instant::now() + Duration::from_secs(5);
    let before = wall_svc.screenshots_taken();
    let a = wall_svc.thumbnail(&teacher_user, vm_id, now).await.unwrap();
    let b = wall_svc.thumbnail(&teacher_user, vm_id, now).await.unwrap();
    assert_eq!(a.png, b.png);
    assert_eq!(wall_svc.screenshots_taken(), before + 1);
    wall_svc
        .thumbnail(&teacher_user, vm_id, now + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(wall_svc.screenshots_taken(), before + 2);

    // ---- view-only: typed keys do not reach the guest.
    // A script the keys would run: `sh /tmp/k NAME` prints KEYS-NAME-42 on
    // the serial console (typed with lowercase letters, `/` and space only).
    common::serial_run(
        &env,
        &vm,
        "echo 'echo KEYS-$1-$((40+2)) > /dev/ttyS0' > /tmp/k; echo PREP-$((1+1))",
        "PREP-2",
    )
    .await;
    let (s, ticket) = teacher
        .post(
            &format!("/api/vms/{vm}/console"),
            json!({"view_only": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["view_only"], true);
    // Students cannot ask for view-only tokens of other VMs either.
    assert_error(
        &bob.post(
            &format!("/api/vms/{vm}/console"),
            json!({"view_only": true}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &teacher
            .post(
                &format!("/api/vms/{vm}/console"),
                json!({"view_only": "yes"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (mut viewer, w, h, bpp) = session(&env, &ticket).await;
    let (_, assist) = alice.get(&format!("/api/vms/{vm}/assist")).await;
    assert_eq!(
        assist["watchers"][0]["username"], "test-teacher",
        "{assist}"
    );
    assert_eq!(assist["watchers"][0]["mode"], "view");
    assert_eq!(assist["hand_raised_at"], raised_at.as_str());
    type_keys(&mut viewer, "sh /tmp/k view").await;
    // A whole frame after the keys: QEMU has handled every message sent
    // before the update request (RFB messages are processed in order).
    viewer.full_frame(w, h, bpp).await;

    // The same through a console with control does reach the guest.
    let (s, ticket) = teacher.post_empty(&format!("/api/vms/{vm}/console")).await;
    assert_eq!(s, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["view_only"], false);
    let (mut control, _, _, _) = session(&env, &ticket).await;
    let (_, assist) = alice.get(&format!("/api/vms/{vm}/assist")).await;
    assert_eq!(assist["watchers"][0]["mode"], "control", "{assist}");
    type_keys(&mut control, "sh /tmp/k ctl").await;
    common::wait_serial(&env, &vm, "KEYS-ctl-42", Duration::from_secs(60)).await;
    let log = tokio::fs::read_to_string(env.console_log(&vm))
        .await
        .unwrap();
    assert!(
        !log.contains("KEYS-view-42"),
        "keys typed through a view-only console reached the guest"
    );
    drop(viewer);
    drop(control);

    // Both opens are on record: the event log and the audit log, with who.
    let (_, events) = admin.get("/api/events?limit=50").await;
    let kinds: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vm_id"] == vm.as_str())
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("console_watched", "test-teacher")),
        "{events}"
    );
    assert!(
        kinds.contains(&("console_taken_over", "test-teacher")),
        "{events}"
    );
    let (_, audit) = admin.get("/api/audit?action=console_open").await;
    let modes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"]["other_user"] == true)
        .filter_map(|e| e["detail"]["mode"].as_str())
        .collect();
    assert!(
        modes.contains(&"view") && modes.contains(&"control"),
        "{audit}"
    );

    // The teacher lowers the hand once helped.
    let (s, _) = teacher.delete(&format!("/api/vms/{vm}/hand")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, w) = teacher.get(&wall).await;
    assert_eq!(w["hands"], 0, "{w}");

    // ---- the teacher's screen shown to the class
    let teacher_vm_path = format!("/api/courses/{course}/teacher-vm");
    assert_error(
        &alice.post_empty(&teacher_vm_path).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (s, tvm) = teacher.post_empty(&teacher_vm_path).await;
    assert_eq!(s, StatusCode::CREATED, "{tvm}");
    let tvm_id = tvm["id"].as_str().unwrap().to_owned();
    env.track_vm(&tvm_id);
    let (s, again) = teacher.post_empty(&teacher_vm_path).await;
    assert_eq!(
        (s, again["id"].as_str()),
        (StatusCode::OK, Some(tvm_id.as_str()))
    );
    let presentation = format!("/api/courses/{course}/presentation");
    // Only the teacher's own VM, and only while it runs.
    assert_error(
        &teacher
            .send(
                reqwest::Method::PUT,
                &presentation,
                Some(json!({"vm_id": vm})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unacceptable",
    );
    assert_error(
        &teacher
            .send(
                reqwest::Method::PUT,
                &presentation,
                Some(json!({"vm_id": tvm_id})),
            )
            .await,
        StatusCode::CONFLICT,
        "vm_not_running",
    );
    let (s, v) = teacher
        .post_empty(&format!("/api/vms/{tvm_id}/start"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_serial(&env, &tvm_id, "BOOT-OK", BOOT_TIMEOUT).await;
    let (s, p) = teacher
        .send(
            reqwest::Method::PUT,
            &presentation,
            Some(json!({"vm_id": tvm_id})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (_, assist) = alice.get(&format!("/api/vms/{vm}/assist")).await;
    assert_eq!(assist["presentation"]["vm_id"], tvm_id.as_str(), "{assist}");
    let (s, ticket) = alice.post_empty(&format!("{presentation}/console")).await;
    assert_eq!(s, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["view_only"], true);
    let (watching, _, _, _) = session(&env, &ticket).await;
    // Alice's session on the teacher's VM is view-only too.
    let watchers = env.server.state.console.watchers(tvm_id.parse().unwrap());
    assert!(watchers.iter().all(|w| w.view_only) && !watchers.is_empty());
    drop(watching);
    // Alice still cannot open the teacher's VM any other way.
    assert_error(
        &alice
            .post_empty(&format!("/api/vms/{tvm_id}/console"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // One click off: no more tokens.
    let (s, _) = teacher.delete(&presentation).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_error(
        &alice.post_empty(&format!("{presentation}/console")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, p) = alice.get(&presentation).await;
    assert!(p.is_null(), "{p}");

    for id in [&vm, &tvm_id] {
        let (s, v) = admin.post_empty(&format!("/api/vms/{id}/poweroff")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}
