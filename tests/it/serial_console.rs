//! The rescue serial console, black-box, on the real local libvirtd with
//! the tiny guest (a root shell on ttyS0): a student gets a serial token,
//! opens `/ws/serial`, types a command and reads its output; the refusals of
//! the graphical console hold here too (another student, a foreign Origin,
//! a reused token, a screen token at the serial door); the course's teacher
//! may open it and takes it over (the student's session ends with 4006);
//! powering the VM off ends the session.

use std::time::Duration;

use crate::common::lab::course_with_student_vm;
use crate::common::{self, Client, TestEnv, assert_error, wait_for};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(env: &TestEnv, token: &str, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let url = format!(
        "{}/ws/serial?token={token}",
        env.server.url().replacen("http://", "ws://", 1)
    );
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let (ws, _) = tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket connect timed out")?;
    Ok(ws)
}

async fn refused(env: &TestEnv, token: &str, origin: Option<&str>, allowed: &[(u16, &str)]) {
    match open(env, token, origin).await {
        Ok(_) => panic!("the upgrade should have been refused"),
        Err(tungstenite::Error::Http(res)) => {
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            let got = (res.status().as_u16(), body["error"].as_str().unwrap_or(""));
            assert!(
                allowed.contains(&got),
                "refusal {got:?} (body {body}), expected one of {allowed:?}"
            );
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

async fn serial_token(client: &Client, vm_id: &str) -> String {
    let (s, v) = client.post_empty(&format!("/api/vms/{vm_id}/serial")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = v["token"].as_str().unwrap().to_owned();
    assert!(t.len() >= 22, "a token carries at least 128 random bits");
    assert_eq!(v["url"], format!("/ws/serial?token={t}"));
    assert_eq!(v["protocol"], "serial");
    assert!(v["expires_in"].as_u64().is_some_and(|s| s > 0), "{v}");
    t
}

/// Reads the console until `needle` has appeared in what arrived (`None`
/// if it did not within `within`); returns all of it.
async fn read_until(ws: &mut Ws, needle: &str, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let found = tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => return Err(format!("{other:?}")),
            }
            if String::from_utf8_lossy(&got).contains(needle) {
                return Ok(());
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    match found {
        Ok(Ok(())) => Some(text),
        Ok(Err(end)) => panic!("the console ended ({end}) before {needle:?}; got {text:?}"),
        Err(_) => {
            eprintln!("no {needle:?} on the serial console yet; got {text:?}");
            None
        }
    }
}

/// Waits for the close frame, skipping output; returns its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    panic!("the session ended without a close code")
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("no close frame")
}

/// Types a command whose output differs from its echo (the shell computes
/// it) and waits for that output. Typed again if nothing came: right after
/// BOOT-OK busybox init may not have started the ttyS0 shell yet, and what
/// is typed before that is lost.
async fn run(ws: &mut Ws, a: u32, b: u32) {
    let line = format!("echo SERIAL-$(({a}*{b}))-OK\r");
    let want = format!("SERIAL-{}-OK", a * b);
    for _ in 0..3 {
        ws.send(Message::Binary(line.clone().into_bytes().into()))
            .await
            .unwrap();
        if read_until(ws, &want, Duration::from_secs(15))
            .await
            .is_some()
        {
            return;
        }
    }
    panic!("the command typed on the serial console never ran");
}

#[tokio::test]
async fn serial_console_runs_a_shell_command_under_the_console_rules() {
    let _pass = common::gate::shared().await;
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-net-serial").await;
    let (alice, vm_id) = (lab.alice, lab.vm);
    let bob = env.client("test-bob").await;
    let teacher = env.client("test-teacher").await;

    assert_error(
        &alice.post_empty(&format!("/api/vms/{vm_id}/serial")).await,
        StatusCode::CONFLICT,
        "vm_not_running",
    );
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_for("BOOT-OK on the serial console", BOOT_TIMEOUT, || async {
        tokio::fs::read_to_string(env.console_log(&vm_id))
            .await
            .is_ok_and(|l| l.contains("BOOT-OK"))
            .then_some(())
    })
    .await;

    // Not another student's; not from a foreign Origin; no unknown token.
    assert_error(
        &bob.post_empty(&format!("/api/vms/{vm_id}/serial")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let t = serial_token(&alice, &vm_id).await;
    refused(
        &env,
        &t,
        Some("http://evil.example"),
        &[(403, "bad_origin")],
    )
    .await;
    refused(
        &env,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
        &[(403, "bad_token")],
    )
    .await;
    // A token of the screen does not open the serial console.
    let (s, v) = alice.post_empty(&format!("/api/vms/{vm_id}/console")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    refused(
        &env,
        v["token"].as_str().unwrap(),
        None,
        &[(403, "bad_token")],
    )
    .await;

    // A shell command typed through the relay runs in the guest.
    let t = serial_token(&alice, &vm_id).await;
    let mut ws = open(&env, &t, Some(&env.server.url())).await.unwrap();
    run(&mut ws, 6, 7).await;
    // Single use.
    refused(&env, &t, None, &[(403, "bad_token")]).await;

    // The teacher may open it too, and takes it over from the student.
    let t = serial_token(&teacher, &vm_id).await;
    let mut teacher_ws = open(&env, &t, None).await.unwrap();
    assert_eq!(
        closed(&mut ws).await,
        (
            pvce::console::close::CONSOLE_CLOSED,
            "serial console closed".to_owned()
        )
    );
    run(&mut teacher_ws, 11, 13).await;

    // Powering off ends the session: 4001 from the stop event, or 4006 when
    // the guest's serial port closed first (both race on the same stop).
    let (s, v) = alice
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, _) = closed(&mut teacher_ws).await;
    assert!(
        [
            pvce::console::close::VM_STOPPED,
            pvce::console::close::CONSOLE_CLOSED
        ]
        .contains(&code),
        "close code {code}"
    );
    wait_for("the sessions to be unregistered", IO_TIMEOUT, || async {
        (env.server.state.console.active_sessions() == 0).then_some(())
    })
    .await;
}
