//! The clipboard through a guest agent (issue 18), with a real QEMU: a
//! course with `clipboard_agent` gives its VMs a qemu-vdagent channel. The
//! tiny guest has no spice-vdagent, so the test plays the guest's side as
//! far as it can: it finds the `com.redhat.spice.0` port in the guest and
//! opens it, and QEMU's vdagent greets it with its capabilities (a live
//! agent end, not a dangling port). Through pvce's console proxy an RFB
//! client that offers the extended clipboard gets QEMU's clipboard
//! capabilities (an extended ServerCutText), as noVNC does. The switch is on
//! the course (create, and `PUT …/clipboard` with `agent`).

use std::time::Duration;

use crate::common::lab::{course, import_tiny, spec, vm_of};
use crate::common::{self, TestEnv};
use crate::console::{Rfb, connect, token};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

/// RFB's extended clipboard pseudo-encoding (0xC0A1E5CE as a signed 32-bit number).
const EXTENDED_CLIPBOARD: u32 = 0xC0A1_E5CE;
const CAPS: u32 = 1 << 24;
const TEXT: u32 = 1;

#[tokio::test]
async fn a_course_with_the_clipboard_agent_gives_its_vms_a_live_vdagent_channel() {
    let _pass = common::gate::shared().await;
    let env = TestEnv::start().await;
    env.user("test-vda-teacher", Role::Teacher).await;
    env.user("test-vda-alice", Role::Student).await;
    let teacher = env.client("test-vda-teacher").await;
    let alice = env.client("test-vda-alice").await;
    let tpl = import_tiny(&teacher, "test-vda-tiny").await;
    let c = course(
        &teacher,
        json!({"code": "test-vda", "name": "Agent", "clipboard_agent": true,
               "vm_specs": [spec("linux", &tpl, 256)]}),
        &["test-vda-alice"],
    )
    .await;
    assert_eq!(c["clipboard_agent"], true, "{c}");
    let id = c["id"].as_str().unwrap();
    // Off and on again on the existing course; the other switches stay.
    for on in [false, true] {
        let (s, v) = teacher
            .send(
                reqwest::Method::PUT,
                &format!("/api/courses/{id}/clipboard"),
                Some(json!({"to_guest": true, "from_guest": true, "agent": on})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["clipboard_agent"], on, "{v}");
    }
    // Not given: unchanged.
    let (s, v) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{id}/clipboard"),
            Some(json!({"to_guest": true, "from_guest": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["clipboard_agent"], true, "{v}");

    let vm_id = vm_of(&env, &alice, &c, "linux").await;
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    common::wait_serial(&env, &vm_id, "BOOT-OK", Duration::from_secs(180)).await;

    // The guest's side of the channel: QEMU's vdagent announces its
    // capabilities (VDIChunkHeader port 1, VDAgentMessage protocol 1, type
    // 6 = ANNOUNCE_CAPABILITIES) as soon as the guest opens the port.
    common::serial_run(
        &env,
        &vm_id,
        "for p in /sys/class/virtio-ports/*; do [ \"$(cat $p/name)\" = com.redhat.spice.0 ] && d=/dev/${p##*/}; done; \
         [ -n \"$d\" ] && cat $d > /tmp/vd & for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/vd ] && break; sleep 1; done; \
         set -- $(od -An -tu4 -N16 /tmp/vd); echo VDAGENT-port=$1-protocol=$3-type=$4-END-$((40+2))",
        "-END-42",
    )
    .await;
    let log = tokio::fs::read_to_string(env.console_log(&vm_id))
        .await
        .unwrap();
    assert!(
        log.contains("VDAGENT-port=1-protocol=1-type=6-END-42"),
        "QEMU's vdagent did not greet the guest: {}",
        log.lines()
            .filter(|l| l.contains("VDAGENT-"))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // Through the proxy: an RFB client offering the extended clipboard gets
    // QEMU's capabilities (text; caps, request, notify, provide).
    let t = token(&alice, &vm_id).await;
    let ws = connect(&env, &t, None).await.unwrap();
    let mut rfb = Rfb {
        ws,
        buf: Vec::new(),
    };
    rfb.handshake().await;
    let mut set = vec![2, 0, 0, 2];
    set.extend_from_slice(&0u32.to_be_bytes());
    set.extend_from_slice(&EXTENDED_CLIPBOARD.to_be_bytes());
    rfb.send(&set).await;
    assert_eq!(rfb.u8().await, 3, "ServerCutText");
    rfb.read_exact(3).await;
    let len = rfb.u32().await as i32;
    assert!(
        len < 0,
        "an extended clipboard message has a negative length: {len}"
    );
    let flags = rfb.u32().await;
    assert_ne!(flags & CAPS, 0, "a caps message: {flags:#x}");
    assert_ne!(flags & TEXT, 0, "text is offered: {flags:#x}");

    let (s, v) = alice
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
