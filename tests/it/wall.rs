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
//!   the course gets a view-only token for it, and none once it stops;
//! - a SPICE VM (whose input the proxy cannot filter) is watched as a live
//!   picture: the view-only request answers with the picture's URL, the
//!   picture is the screen at the hypervisor's size and shows what the guest
//!   printed, its watcher is on the student's assist for as long as pictures
//!   come and a little after, and the watch is recorded once; the same for a
//!   SPICE teacher VM shown to the class.

use std::time::{Duration, Instant};

use crate::common::lab::{self, course_with_student_vm};
use crate::common::{self, TestEnv, assert_error, wait_for};
use crate::console::{Rfb, connect};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A picture of a screen: its size, and how many of its pixels are not
/// dark (any colour channel above 40) — text on the console, as opposed to
/// a cleared screen.
#[derive(Debug, Clone, Copy)]
struct Lit {
    width: u32,
    height: u32,
    lit: usize,
    total: usize,
}

fn lit(png_bytes: &[u8]) -> Lit {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a colour picture expected, got {other:?}"),
    };
    let px = &buf[..info.buffer_size()];
    let lit = px
        .chunks_exact(channels)
        .filter(|p| p[..3].iter().any(|&c| c > 40))
        .count();
    Lit {
        width: info.width,
        height: info.height,
        lit,
        total: px.len() / channels,
    }
}

/// Clears the guest's screen (tty1).
async fn clear_screen(env: &TestEnv, vm: &str) {
    common::serial_run(
        env,
        vm,
        "printf '\\033[2J\\033[H' > /dev/tty1; echo CLR-$((1+1))",
        "CLR-2",
    )
    .await;
}

/// Prints `marker` 60 times on the guest's screen (tty1).
async fn print_marker(env: &TestEnv, vm: &str, marker: &str) {
    let line = format!("yes {marker}-{marker} | head -n 30 > /dev/tty1; echo MRK-$((2+2))");
    common::serial_run(env, vm, &line, "MRK-4").await;
}

/// Polls the picture at `path` until one for which `wanted` holds comes
/// (the cache serves one for up to a second): that picture and its pixels.
async fn picture_when(
    client: &common::Client,
    path: &str,
    what: &str,
    wanted: impl Fn(&Lit) -> bool,
) -> (Lit, Vec<u8>) {
    wait_for(what, Duration::from_secs(30), || async {
        let (s, png) = png_at(client, path).await;
        assert_eq!(s, StatusCode::OK);
        let l = lit(&png);
        wanted(&l).then_some((l, png))
    })
    .await
}

/// A cleared console is black but for a cursor.
fn blank(l: &Lit) -> bool {
    l.lit * 200 < l.total
}

/// Thirty lines of a marker light a good part of the screen.
fn marked(l: &Lit) -> bool {
    l.lit * 20 > l.total
}

/// A PNG of a screen from `path` (its headers checked when it comes).
async fn png_at(client: &common::Client, path: &str) -> (StatusCode, Vec<u8>) {
    let res = client
        .request(reqwest::Method::GET, path)
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

async fn thumbnail(client: &common::Client, vm: &str) -> (StatusCode, Vec<u8>) {
    png_at(client, &format!("/api/vms/{vm}/thumbnail")).await
}

/// The live picture of a VM's screen.
async fn screen(client: &common::Client, vm: &str) -> (StatusCode, Vec<u8>) {
    png_at(client, &format!("/api/vms/{vm}/screen")).await
}

/// The size of the running VM's screen as the hypervisor reports it (its
/// own screenshot, read here, not through the wall).
async fn hypervisor_screen_size(env: &TestEnv, vm: &str) -> (u32, u32) {
    let vms = &env.server.state.vms;
    let id: uuid::Uuid = vm.parse().unwrap();
    let (_, _, conn) = vms.running_on_node(id).await.unwrap();
    let (_, raw) = conn
        .screenshot(&vms.domain_name(id), 64 << 20)
        .await
        .unwrap()
        .expect("a running VM's screenshot");
    if raw.starts_with(b"\x89PNG") {
        let l = lit(&raw);
        return (l.width, l.height);
    }
    let (w, h, _) = pvce::desk::screenshot::parse_ppm(&raw).unwrap();
    (w, h)
}

/// The events of `kind` on `vm` by `actor`.
async fn events_of(admin: &common::Client, kind: &str, vm: &str, actor: &str) -> usize {
    let (_, events) = admin.get("/api/events?limit=200").await;
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vm_id"] == vm && e["kind"] == kind && e["actor"] == actor)
        .count()
}

/// The names of whoever else has `vm`'s screen open, as its owner sees it.
async fn watchers(owner: &common::Client, vm: &str) -> Vec<(String, String)> {
    let (s, a) = owner.get(&format!("/api/vms/{vm}/assist")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    a["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["username"].as_str().unwrap().to_owned(),
                w["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
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

/// Shows the teacher's VM `vm` to the class (`presentation`: the course's
/// presentation route).
async fn present(teacher: &common::Client, presentation: &str, vm: &str) {
    let (s, p) = teacher
        .send(
            reqwest::Method::PUT,
            presentation,
            Some(json!({ "vm_id": vm })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
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
    let thumb_path = format!("/api/vms/{vm}/thumbnail");
    clear_screen(&env, &vm).await;
    let (cleared, _) = picture_when(&teacher, &thumb_path, "a blank thumbnail", blank).await;
    assert!(cleared.width <= 320, "a thumbnail is at most 320 wide");
    print_marker(&env, &vm, "WALL-MARKER").await;
    let (with_marker, _) =
        picture_when(&teacher, &thumb_path, "a thumbnail with the marker", marked).await;
    eprintln!(
        "thumbnail: {} lit pixels blank, {} with the marker, of {}",
        cleared.lit, with_marker.lit, cleared.total
    );
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
    lab::boot(&env, &teacher, &tvm_id).await;
    present(&teacher, &presentation, &tvm_id).await;
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

#[tokio::test]
async fn spice_vms_are_watched_as_a_live_picture() {
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    env.user("test-bob", Role::Student).await;
    env.user("test-carol", Role::Student).await;
    env.user("test-spice-admin", Role::Admin).await;
    let teacher = env.client("test-teacher").await;
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let carol = env.client("test-carol").await;
    let admin = env.client("test-spice-admin").await;
    let (_, me) = teacher.get("/api/me").await;
    let teacher_user = user_of(&me["user"]);
    // Carol is not in the course.
    let (course, vm) = lab::spice_course_with_running_vm(
        &env,
        (&teacher, "test-tiny"),
        ("test-wall-spice", 256),
        &alice,
        &["test-alice", "test-bob"],
    )
    .await;
    let course_id = course["id"].as_str().unwrap().to_owned();
    let vm_id: uuid::Uuid = vm.parse().unwrap();
    let screen_path = format!("/api/vms/{vm}/screen");

    // ---- watching a SPICE console is the live picture, not a token
    let (s, grant) = teacher
        .post(
            &format!("/api/vms/{vm}/console"),
            json!({"view_only": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{grant}");
    assert_eq!(grant["mode"], "picture", "{grant}");
    assert_eq!(grant["protocol"], "spice");
    assert_eq!(grant["view_only"], true);
    assert_eq!(grant["picture_url"], format!("/api/vms/{vm}/screen"));
    assert!(grant["token"].is_null(), "no console session: {grant}");
    // With control it is a SPICE console token, as before.
    let (s, t) = teacher.post_empty(&format!("/api/vms/{vm}/console")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        (t["mode"].as_str(), t["protocol"].as_str()),
        (Some("console"), Some("spice"))
    );
    assert!(t["token"].is_string(), "{t}");
    // The request alone is no watch: nobody has fetched a picture.
    assert!(watchers(&alice, &vm).await.is_empty());
    assert_eq!(
        events_of(&admin, "console_watched", &vm, "test-teacher").await,
        0
    );
    // Other students get neither the picture nor the grant.
    for other in [&bob, &carol] {
        assert_error(
            &other.get(&format!("/api/vms/{vm}/screen")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &other
                .post(
                    &format!("/api/vms/{vm}/console"),
                    json!({"view_only": true}),
                )
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }

    // ---- the picture is the real screen, at the hypervisor's size
    clear_screen(&env, &vm).await;
    let (cleared, blank_png) = picture_when(&teacher, &screen_path, "a blank picture", blank).await;
    let size = hypervisor_screen_size(&env, &vm).await;
    assert_eq!(
        (cleared.width, cleared.height),
        size,
        "the screen's own size"
    );
    assert!(cleared.width > 320, "larger than a thumbnail: {size:?}");
    let (s, thumb) = thumbnail(&teacher, &vm).await;
    assert_eq!(s, StatusCode::OK);
    let t = lit(&thumb);
    assert_eq!(
        (t.width, t.height),
        (320, size.1 * 320 / size.0),
        "the same screen shrunk"
    );
    print_marker(&env, &vm, "SPICE-MARKER").await;
    let (with_marker, marked_png) =
        picture_when(&teacher, &screen_path, "a picture with the marker", marked).await;
    assert_ne!(marked_png, blank_png);
    assert_eq!((with_marker.width, with_marker.height), size);
    eprintln!(
        "picture {}x{}: {} lit pixels blank, {} with the marker",
        size.0, size.1, cleared.lit, with_marker.lit
    );

    // ---- the watch: on the student's assist and the wall, recorded once
    assert_eq!(
        watchers(&alice, &vm).await,
        vec![("test-teacher".to_owned(), "view".to_owned())]
    );
    let (_, w) = teacher.get(&format!("/api/courses/{course_id}/wall")).await;
    let tile = w["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["vm_id"] == vm.as_str())
        .unwrap()
        .clone();
    assert_eq!(tile["watchers"][0]["username"], "test-teacher", "{tile}");
    assert_eq!(tile["watchers"][0]["mode"], "view", "{tile}");
    assert_eq!(
        events_of(&admin, "console_watched", &vm, "test-teacher").await,
        1,
        "one watch, however many pictures"
    );
    let (_, audit) = admin.get("/api/audit?action=console_open").await;
    let opens: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"]["id"] == vm.as_str() && e["detail"]["via"] == "picture")
        .collect();
    assert_eq!(opens.len(), 1, "{audit}");
    assert_eq!(opens[0]["detail"]["mode"], "view", "{audit}");
    assert_eq!(opens[0]["detail"]["other_user"], true, "{audit}");
    // The owner may see their own screen too.
    assert_eq!(screen(&alice, &vm).await.0, StatusCode::OK);

    // ---- no pictures for a few seconds: the watch ends; a new one is new
    wait_for("the watch to end", Duration::from_secs(30), || async {
        watchers(&alice, &vm).await.is_empty().then_some(())
    })
    .await;
    // One screenshot serves the watcher and the wall (the service, with
    // the time given): two pictures and a thumbnail at one instant.
    let wall_svc = &env.server.state.wall;
    let now = Instant::now();
    let before = wall_svc.screenshots_taken();
    let a = wall_svc.screen(&teacher_user, vm_id, now).await.unwrap();
    let b = wall_svc.screen(&teacher_user, vm_id, now).await.unwrap();
    assert_eq!(a, b);
    wall_svc.thumbnail(&teacher_user, vm_id, now).await.unwrap();
    assert_eq!(wall_svc.screenshots_taken(), before + 1);
    assert_eq!(
        events_of(&admin, "console_watched", &vm, "test-teacher").await,
        2,
        "watching again after the watch ended is a second watch"
    );

    // ---- stopped: 409, and nobody watches any more
    let (s, v) = admin.post_empty(&format!("/api/vms/{vm}/poweroff")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_for("the stopped VM's 409", Duration::from_secs(30), || async {
        (screen(&teacher, &vm).await.0 == StatusCode::CONFLICT).then_some(())
    })
    .await;
    assert_error(
        &teacher.get(&format!("/api/vms/{vm}/screen")).await,
        StatusCode::CONFLICT,
        "vm_not_running",
    );
    assert!(watchers(&alice, &vm).await.is_empty());

    // ---- a SPICE teacher VM shown to the class
    let (s, tvm) = teacher
        .post_empty(&format!("/api/courses/{course_id}/teacher-vm"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tvm}");
    let tvm_id = tvm["id"].as_str().unwrap().to_owned();
    env.track_vm(&tvm_id);
    lab::boot(&env, &teacher, &tvm_id).await;
    let presentation = format!("/api/courses/{course_id}/presentation");
    // Not shown yet: the class cannot see it.
    assert_error(
        &alice.get(&format!("/api/vms/{tvm_id}/screen")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    present(&teacher, &presentation, &tvm_id).await;
    let (s, grant) = alice.post_empty(&format!("{presentation}/console")).await;
    assert_eq!(s, StatusCode::OK, "{grant}");
    assert_eq!(grant["mode"], "picture", "{grant}");
    assert_eq!(grant["picture_url"], format!("/api/vms/{tvm_id}/screen"));
    for student in [&alice, &bob] {
        let (s, png) = screen(student, &tvm_id).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(lit(&png).width, size.0, "the teacher's screen at full size");
    }
    // Not in the course: not for Carol.
    assert_error(
        &carol.get(&format!("/api/vms/{tvm_id}/screen")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The teacher sees who watches their screen.
    let mut class = watchers(&teacher, &tvm_id).await;
    class.sort();
    assert_eq!(
        class,
        vec![
            ("test-alice".to_owned(), "view".to_owned()),
            ("test-bob".to_owned(), "view".to_owned())
        ]
    );
    // No longer shown: no more pictures for the class.
    let (s, _) = teacher.delete(&presentation).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_error(
        &alice.get(&format!("/api/vms/{tvm_id}/screen")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, v) = admin
        .post_empty(&format!("/api/vms/{tvm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
