//! SPICE VMs and virt-viewer files, black-box on the real local libvirtd with
//! the tiny guest. A course with a VNC spec and a SPICE spec: the spec's
//! `graphics` is stored and returned, a SPICE VM's console token says
//! `protocol: "spice"` and `/ws/console` carries the SPICE byte stream
//! untouched. `GET /api/vms/{id}/console.vv` (role matrix on a real running
//! VM) returns a virt-viewer file whose port is the live console port and
//! whose one-time password really works: the SPICE link handshake (RSA-OAEP
//! ticket) and VNC authentication succeed with it, a wrong ticket is
//! refused, and once it expires it is refused too — while the browser proxy
//! keeps working for the VNC VM before and after the expiry (it re-reads and
//! renews the live password).

use std::time::Duration;

use crate::common::lab::{course, import_tiny, spec, vm_of};
use crate::common::{self, TestEnv, assert_error, get_bytes, wait_for};
use futures::{SinkExt, StreamExt};
use pvce::auth::Role;
use reqwest::StatusCode;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The `.vv` password lifetime this test runs with (the smallest allowed).
const TICKET_TTL: u64 = 5;

/// A byte stream to a console: straight TCP to the node, or through pvce's
/// WebSocket proxy (messages gathered into a stream).
enum Conn {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>, Vec<u8>),
}

impl Conn {
    async fn tcp(host: &str, port: u16) -> Conn {
        let s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .unwrap()
            .unwrap();
        Conn::Tcp(s)
    }

    async fn ws(env: &TestEnv, token: &str) -> Conn {
        let url = format!(
            "{}/ws/console?token={token}",
            env.server.url().replacen("http://", "ws://", 1)
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
        let (ws, _) = tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap()
            .unwrap();
        Conn::Ws(Box::new(ws), Vec::new())
    }

    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        match self {
            Conn::Tcp(s) => {
                let mut b = vec![0u8; n];
                tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut b))
                    .await
                    .expect("timed out reading the console")
                    .unwrap();
                b
            }
            Conn::Ws(ws, buf) => {
                while buf.len() < n {
                    let msg = tokio::time::timeout(IO_TIMEOUT, ws.next())
                        .await
                        .expect("timed out reading the console")
                        .expect("WebSocket ended")
                        .unwrap();
                    match msg {
                        Message::Binary(b) => buf.extend_from_slice(&b),
                        Message::Ping(_) | Message::Pong(_) => {}
                        other => panic!("unexpected message: {other:?}"),
                    }
                }
                buf.drain(..n).collect()
            }
        }
    }

    async fn u32_be(&mut self) -> u32 {
        u32::from_be_bytes(self.read_exact(4).await.try_into().unwrap())
    }

    async fn u32_le(&mut self) -> u32 {
        u32::from_le_bytes(self.read_exact(4).await.try_into().unwrap())
    }

    async fn send(&mut self, b: &[u8]) {
        match self {
            Conn::Tcp(s) => s.write_all(b).await.unwrap(),
            Conn::Ws(ws, _) => ws.send(Message::Binary(b.to_vec().into())).await.unwrap(),
        }
    }
}

/// The SPICE link handshake for the main channel, as spice-gtk does it:
/// SpiceLinkMess (auth selection + SPICE auth caps) → SpiceLinkReply with
/// the server's RSA public key → auth mechanism SPICE → the ticket
/// encrypted with RSA-OAEP(SHA-1), NUL included → link result (0 = OK,
/// 7 = permission denied).
async fn spice_link(c: &mut Conn, ticket: &str) -> u32 {
    let mut mess = Vec::new();
    mess.extend_from_slice(&0u32.to_le_bytes()); // connection id
    mess.push(1); // channel type: main
    mess.push(0); // channel id
    mess.extend_from_slice(&1u32.to_le_bytes()); // common caps words
    mess.extend_from_slice(&0u32.to_le_bytes()); // channel caps words
    mess.extend_from_slice(&18u32.to_le_bytes()); // caps offset
    mess.extend_from_slice(&3u32.to_le_bytes()); // AUTH_SELECTION | AUTH_SPICE
    let mut link = b"REDQ".to_vec();
    link.extend_from_slice(&2u32.to_le_bytes());
    link.extend_from_slice(&2u32.to_le_bytes());
    link.extend_from_slice(&(mess.len() as u32).to_le_bytes());
    link.extend_from_slice(&mess);
    c.send(&link).await;

    let header = c.read_exact(16).await;
    assert_eq!(&header[..4], b"REDQ", "not a SPICE server: {header:?}");
    assert_eq!(u32::from_le_bytes(header[4..8].try_into().unwrap()), 2);
    let size = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
    let reply = c.read_exact(size).await;
    assert_eq!(
        u32::from_le_bytes(reply[..4].try_into().unwrap()),
        0,
        "link error"
    );
    let key = RsaPublicKey::from_public_key_der(&reply[4..4 + 162]).unwrap();
    c.send(&1u32.to_le_bytes()).await; // auth mechanism: SPICE
    let mut plain = ticket.as_bytes().to_vec();
    plain.push(0);
    let sealed = key
        .encrypt(&mut rand::rngs::OsRng, Oaep::new::<sha1::Sha1>(), &plain)
        .unwrap();
    c.send(&sealed).await;
    c.u32_le().await
}

/// VNC authentication straight to the node with `password`; returns the
/// SecurityResult (0 = OK) after checking the node demands VNC auth.
async fn vnc_auth(host: &str, port: u16, password: &str) -> u32 {
    let mut c = Conn::tcp(host, port).await;
    assert_eq!(c.read_exact(12).await, b"RFB 003.008\n");
    c.send(b"RFB 003.008\n").await;
    let n = c.read_exact(1).await[0];
    let types = c.read_exact(usize::from(n)).await;
    assert_eq!(types, vec![2], "the node must demand VNC authentication");
    c.send(&[2]).await;
    let challenge: [u8; 16] = c.read_exact(16).await.try_into().unwrap();
    c.send(&pvce::console::vnc_auth_response(&challenge, password))
        .await;
    c.u32_be().await
}

/// A browser-side RFB session through the proxy: version, security None,
/// ClientInit, ServerInit; returns the framebuffer size.
async fn proxied_rfb(env: &TestEnv, client: &common::Client, vm_id: &str) -> (u16, u16) {
    let (s, v) = client
        .post_empty(&format!("/api/vms/{vm_id}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["protocol"], "vnc");
    let mut c = Conn::ws(env, v["token"].as_str().unwrap()).await;
    assert_eq!(c.read_exact(12).await, b"RFB 003.008\n");
    c.send(b"RFB 003.008\n").await;
    let n = c.read_exact(1).await[0];
    assert_eq!(c.read_exact(usize::from(n)).await, vec![1], "None offered");
    c.send(&[1]).await;
    assert_eq!(c.u32_be().await, 0, "SecurityResult");
    c.send(&[1]).await;
    let init = c.read_exact(4).await;
    (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    )
}

/// The `[virt-viewer]` file of a VM as (key → value), after checking the
/// response headers.
async fn viewer_file(
    client: &common::Client,
    vm_id: &str,
) -> std::collections::HashMap<String, String> {
    let (s, headers, body) = get_bytes(client, &format!("/api/vms/{vm_id}/console.vv")).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "application/x-virt-viewer");
    let cd = headers["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("attachment;") && cd.contains(".vv"), "{cd}");
    assert_eq!(headers["cache-control"], "no-store");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("[virt-viewer]"));
    lines
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn spice_vms_and_viewer_files_with_one_time_passwords() {
    // Two guests, and passwords that must outlive steps and then expire: alone
    // (see common::gate).
    let _alone = common::gate::alone().await;
    let env = TestEnv::start_with(|c| c.console_ticket_ttl_secs = TICKET_TTL).await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-teacher2", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    env.user("test-bob", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let teacher2 = env.client("test-teacher2").await;
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let anon = common::Client::anonymous(&env.server.url());

    let tpl = import_tiny(&teacher, "test-tiny").await;
    let mut spice = spec("spice", &tpl, 256);
    spice["graphics"] = json!("spice");
    let course = course(
        &teacher,
        json!({"code": "test-gfx", "name": "Graphics", "vm_specs": [spec("desk", &tpl, 256), spice]}),
        &["test-alice", "test-bob"],
    )
    .await;
    assert_eq!(course["vm_specs"][0]["graphics"], "vnc", "default");
    assert_eq!(course["vm_specs"][1]["graphics"], "spice");
    let cid = course["id"].as_str().unwrap();
    let (_, c) = alice.get(&format!("/api/courses/{cid}")).await;
    assert_eq!(c["vm_specs"][1]["graphics"], "spice", "{c}");

    let vnc_id = vm_of(&env, &alice, &course, "desk").await;
    let spice_id = vm_of(&env, &alice, &course, "spice").await;

    // Not running yet: no viewer file.
    assert_error(
        &alice.get(&format!("/api/vms/{spice_id}/console.vv")).await,
        StatusCode::CONFLICT,
        "vm_not_running",
    );

    for id in [&vnc_id, &spice_id] {
        let (s, v) = alice.post_empty(&format!("/api/vms/{id}/start")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    for id in [&vnc_id, &spice_id] {
        wait_for("BOOT-OK on the serial console", BOOT_TIMEOUT, || async {
            tokio::fs::read_to_string(env.console_log(id))
                .await
                .is_ok_and(|l| l.contains("BOOT-OK"))
                .then_some(())
        })
        .await;
    }
    // The domain really has SPICE graphics.
    let (_, host, spice_port, kind) = env
        .server
        .state
        .console
        .endpoint(spice_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(kind, pvce::libvirt::GraphicsKind::Spice);

    // Who may download a viewer file: owner, the course's teacher, admins.
    for (who, client, want) in [
        ("owner", &alice, 200),
        ("course teacher", &teacher, 200),
        ("admin", &admin, 200),
        ("another student", &bob, 404),
        ("another teacher", &teacher2, 404),
        ("anonymous", &anon, 401),
    ] {
        let (s, _, body) = get_bytes(client, &format!("/api/vms/{spice_id}/console.vv")).await;
        assert_eq!(
            s.as_u16(),
            want,
            "{who}: {}",
            String::from_utf8_lossy(&body)
        );
        if want != 200 {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v["error"].is_string(), "{who}: {v}");
        }
    }

    // SPICE: the file points at the live console, and its ticket works.
    let vv = viewer_file(&alice, &spice_id).await;
    assert_eq!(vv["type"], "spice");
    assert_eq!(vv["host"], host);
    assert_eq!(vv["port"], spice_port.to_string(), "the live port");
    assert_eq!(vv["delete-this-file"], "1");
    assert!(vv["title"].contains("test-gfx"), "{vv:?}");
    let ticket = vv["password"].clone();
    assert!(ticket.len() >= 16, "a SPICE ticket is long");
    let mut c = Conn::tcp(&host, spice_port).await;
    assert_eq!(
        spice_link(&mut c, "not-the-ticket").await,
        7,
        "wrong ticket"
    );
    let mut c = Conn::tcp(&host, spice_port).await;
    assert_eq!(spice_link(&mut c, &ticket).await, 0, "the ticket works");
    drop(c);

    // The same proxy carries SPICE: the token says so, and a SPICE link
    // through /ws/console reaches the node's SPICE server (bytes untouched).
    let (s, v) = alice
        .post_empty(&format!("/api/vms/{spice_id}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["protocol"], "spice");
    let mut c = Conn::ws(&env, v["token"].as_str().unwrap()).await;
    assert_eq!(
        spice_link(&mut c, &ticket).await,
        0,
        "SPICE through the proxy"
    );
    drop(c);

    // VNC: the file's password is the node's VNC password for a while; the
    // browser proxy keeps working meanwhile (it reads the live password).
    let (_, _, vnc_port, _) = env
        .server
        .state
        .console
        .endpoint(vnc_id.parse().unwrap())
        .await
        .unwrap();
    let vv = viewer_file(&teacher, &vnc_id).await;
    assert_eq!(vv["type"], "vnc");
    assert_eq!(vv["port"], vnc_port.to_string(), "the live port");
    let password = vv["password"].clone();
    assert_eq!(password.len(), 8);
    assert_eq!(vnc_auth(&host, vnc_port, &password).await, 0, "VNC ticket");
    assert_ne!(vnc_auth(&host, vnc_port, "wrong").await, 0);
    let (w, h) = proxied_rfb(&env, &alice, &vnc_id).await;
    assert!(w > 0 && h > 0);

    // After the lifetime, both tickets are refused by the nodes …
    wait_for(
        "the VNC ticket to expire",
        Duration::from_secs(30),
        || async { (vnc_auth(&host, vnc_port, &password).await != 0).then_some(()) },
    )
    .await;
    wait_for(
        "the SPICE ticket to expire",
        Duration::from_secs(30),
        || async {
            let mut c = Conn::tcp(&host, spice_port).await;
            (spice_link(&mut c, &ticket).await != 0).then_some(())
        },
    )
    .await;
    // … and the browser proxy still gets in (it renewed the password), while
    // the expired ticket stays refused.
    let (w, h) = proxied_rfb(&env, &alice, &vnc_id).await;
    assert!(w > 0 && h > 0);
    assert_ne!(vnc_auth(&host, vnc_port, &password).await, 0);

    for id in [&vnc_id, &spice_id] {
        let (s, v) = alice.post_empty(&format!("/api/vms/{id}/poweroff")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}
