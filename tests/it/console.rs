//! The console proxy, black-box, on the real local libvirtd with the tiny
//! guest: a student gets a token, opens `/ws/console` with a WebSocket client,
//! speaks RFB to the VM's real QEMU VNC server through the proxy (handshake,
//! security type None, ClientInit/ServerInit, a full Raw framebuffer update)
//! while the node's console itself requires VNC authentication with a
//! password only pvce knows (a direct connection without it is refused),
//! and every refusal the issue lists is checked: reused token, another
//! student, wrong Origin, token voided by a stop, and the session closed with
//! 4001 "VM stopped" when the VM is powered off under it. Tokens must never
//! reach a log or a file.

use std::time::Duration;

use crate::common::lab::course_with_student_vm;
use crate::common::{self, TestEnv, assert_error, wait_for};
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

fn ws_url(env: &TestEnv, path: &str) -> String {
    format!(
        "{}{}",
        env.server.url().replacen("http://", "ws://", 1),
        path
    )
}

/// Opens `/ws/console?token=…` asking for the `binary` subprotocol, as noVNC does.
pub(crate) async fn connect(
    env: &TestEnv,
    token: &str,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut req = ws_url(env, &format!("/ws/console?token={token}"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let (ws, res) = tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket connect timed out")?;
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("binary"),
        "the server must accept the binary subprotocol"
    );
    Ok(ws)
}

/// Expects the upgrade to be refused with an API error before any WebSocket exists.
async fn assert_refused(
    env: &TestEnv,
    token: &str,
    origin: Option<&str>,
    allowed: &[(StatusCode, &str)],
) {
    match connect(env, token, origin).await {
        Ok(_) => panic!("the upgrade should have been refused"),
        Err(tungstenite::Error::Http(res)) => {
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            let got = (res.status().as_u16(), body["error"].as_str().unwrap_or(""));
            assert!(
                allowed.iter().any(|(s, c)| (s.as_u16(), *c) == got),
                "refusal {got:?} (body {body}), expected one of {allowed:?}"
            );
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

/// An RFB client over the proxied WebSocket: WebSocket messages are a byte
/// stream, so reads gather bytes across messages.
pub(crate) struct Rfb {
    pub(crate) ws: Ws,
    pub(crate) buf: Vec<u8>,
}

impl Rfb {
    pub(crate) async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let msg = tokio::time::timeout(IO_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for RFB bytes")
                .expect("WebSocket ended")
                .unwrap();
            match msg {
                Message::Binary(b) => self.buf.extend_from_slice(&b),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected message in the RFB stream: {other:?}"),
            }
        }
        self.buf.drain(..n).collect()
    }

    pub(crate) async fn u8(&mut self) -> u8 {
        self.read_exact(1).await[0]
    }
    pub(crate) async fn u16(&mut self) -> u16 {
        let b = self.read_exact(2).await;
        u16::from_be_bytes([b[0], b[1]])
    }
    pub(crate) async fn u32(&mut self) -> u32 {
        let b = self.read_exact(4).await;
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .unwrap();
    }

    /// Version, security type None, SecurityResult, ClientInit, ServerInit.
    /// Returns (width, height, bits per pixel, desktop name).
    pub(crate) async fn handshake(&mut self) -> (u16, u16, u8, String) {
        let version = self.read_exact(12).await;
        assert!(
            version.starts_with(b"RFB 003."),
            "not an RFB server: {version:?}"
        );
        self.send(b"RFB 003.008\n").await;
        let n = self.u8().await;
        assert!(n > 0, "the server refused the connection");
        let types = self.read_exact(n as usize).await;
        assert!(
            types.contains(&1),
            "the browser must be offered security type None, got {types:?}"
        );
        self.send(&[1]).await;
        assert_eq!(self.u32().await, 0, "SecurityResult must be OK");
        self.send(&[1]).await; // ClientInit, shared
        let w = self.u16().await;
        let h = self.u16().await;
        let pixel_format = self.read_exact(16).await;
        let name_len = self.u32().await as usize;
        let name = String::from_utf8_lossy(&self.read_exact(name_len).await).into_owned();
        (w, h, pixel_format[0], name)
    }

    /// Asks for the whole screen in Raw and reads updates until every pixel has
    /// come; returns the pixel bytes.
    pub(crate) async fn full_frame(&mut self, w: u16, h: u16, bpp: u8) -> Vec<u8> {
        // SetEncodings: Raw only.
        self.send(&[2, 0, 0, 1, 0, 0, 0, 0]).await;
        // FramebufferUpdateRequest, non-incremental, full screen.
        let mut req = vec![3, 0, 0, 0, 0, 0];
        req.extend_from_slice(&w.to_be_bytes());
        req.extend_from_slice(&h.to_be_bytes());
        self.send(&req).await;
        let want_pixels = u64::from(w) * u64::from(h);
        let (mut pixels, mut data) = (0u64, Vec::new());
        while pixels < want_pixels {
            match self.u8().await {
                0 => {
                    self.read_exact(1).await;
                    let rects = self.u16().await;
                    for _ in 0..rects {
                        let _x = self.u16().await;
                        let _y = self.u16().await;
                        let rw = self.u16().await;
                        let rh = self.u16().await;
                        let enc = self.u32().await;
                        assert_eq!(enc, 0, "only Raw was asked for");
                        let n = usize::from(rw) * usize::from(rh) * usize::from(bpp / 8);
                        data.extend(self.read_exact(n).await);
                        pixels += u64::from(rw) * u64::from(rh);
                    }
                }
                2 => {} // Bell
                3 => {
                    self.read_exact(3).await;
                    let len = self.u32().await as usize;
                    self.read_exact(len).await;
                }
                t => panic!("unexpected server message type {t}"),
            }
        }
        assert_eq!(pixels, want_pixels);
        data
    }

    /// Waits for the server to close the WebSocket; returns (code, reason).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let msg = tokio::time::timeout(IO_TIMEOUT, self.ws.next())
                .await
                .expect("the session was not closed");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("closed without a close frame: {e}"),
            }
        }
    }
}

/// Connects straight to a node's VNC port, as an attacker on the management
/// network would, and tries to get in without the password: returns the
/// security types offered, after checking that a guessed response is refused.
async fn direct_vnc_without_password(host: &str, port: u16) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .unwrap()
        .unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).await.unwrap();
    assert_eq!(&v, b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").await.unwrap();
    let n = s.read_u8().await.unwrap();
    let mut types = vec![0u8; usize::from(n)];
    s.read_exact(&mut types).await.unwrap();
    if types.contains(&1) {
        return types; // None offered: the caller's assertion fails
    }
    s.write_u8(2).await.unwrap();
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).await.unwrap();
    // The response for an empty password.
    let guess = pvce::console::vnc_auth_response(&challenge, "");
    s.write_all(&guess).await.unwrap();
    assert_ne!(
        s.read_u32().await.unwrap(),
        0,
        "a guessed password was accepted"
    );
    types
}

pub(crate) async fn token(client: &common::Client, vm_id: &str) -> String {
    let (s, v) = client
        .post_empty(&format!("/api/vms/{vm_id}/console"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = v["token"].as_str().unwrap().to_owned();
    assert!(
        t.len() >= 22,
        "a token carries at least 128 random bits: {t}"
    );
    assert_eq!(v["url"], format!("/ws/console?token={t}"));
    assert_eq!(v["protocol"], "vnc");
    assert_eq!(v["expires_in"], 60);
    t
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn browser_console_relays_rfb_and_refuses_what_it_must() {
    // Alone: its log capture must see this server's access log whole (one
    // full-suite run found no `/ws/console` line while another test ran
    // beside it; alone it has never failed).
    let _alone = common::gate::alone().await;
    let logs = common::logs::capture();
    let env = TestEnv::start().await;
    let lab = course_with_student_vm(&env, "test-net201").await;
    let (alice, vm_id) = (lab.alice, lab.vm);
    let bob = env.client("test-bob").await;
    let mut tokens = Vec::new();

    // No console while the VM is stopped.
    assert_error(
        &alice.post_empty(&format!("/api/vms/{vm_id}/console")).await,
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

    // Another student can't get a token for Alice's VM.
    assert_error(
        &bob.post_empty(&format!("/api/vms/{vm_id}/console")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A token is refused from a foreign Origin.
    let t_origin = token(&alice, &vm_id).await;
    tokens.push(t_origin.clone());
    assert_refused(
        &env,
        &t_origin,
        Some("http://evil.example"),
        &[(StatusCode::FORBIDDEN, "bad_origin")],
    )
    .await;
    // Unknown tokens are refused.
    assert_refused(
        &env,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
        &[(StatusCode::FORBIDDEN, "bad_token")],
    )
    .await;

    // A real RFB session through the proxy, from the server's own Origin.
    let t1 = token(&alice, &vm_id).await;
    tokens.push(t1.clone());
    let ws = connect(&env, &t1, Some(&env.server.url())).await.unwrap();
    let mut rfb = Rfb {
        ws,
        buf: Vec::new(),
    };
    let (w, h, bpp, name) = rfb.handshake().await;
    assert!(w > 0 && h > 0, "{w}x{h}");
    assert!(matches!(bpp, 8 | 16 | 32), "bpp {bpp}");
    eprintln!("ServerInit: {w}x{h}, {bpp} bpp, name {name:?}");
    let frame = rfb.full_frame(w, h, bpp).await;
    assert_eq!(
        frame.len(),
        usize::from(w) * usize::from(h) * usize::from(bpp / 8)
    );
    assert!(
        frame.iter().any(|&b| b != 0),
        "the guest's screen is all black"
    );

    // The node's console itself demands VNC authentication: a direct TCP
    // client without the password is refused (only the proxy knows it).
    let (_, host, port, _) = env
        .server
        .state
        .console
        .endpoint(vm_id.parse().unwrap())
        .await
        .unwrap();
    let types = direct_vnc_without_password(&host, port).await;
    assert_eq!(
        types,
        vec![2],
        "the node must offer only VNC authentication"
    );

    // The token was single use.
    assert_refused(
        &env,
        &t1,
        Some(&env.server.url()),
        &[(StatusCode::FORBIDDEN, "bad_token")],
    )
    .await;

    // A token issued while running, then the VM is powered off under the open session.
    let t_stale = token(&alice, &vm_id).await;
    tokens.push(t_stale.clone());
    let (s, v) = alice
        .post_empty(&format!("/api/vms/{vm_id}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        rfb.closed().await,
        (pvce::console::close::VM_STOPPED, "VM stopped".to_owned())
    );
    // The stale token is refused before any upgrade: voided by the stop
    // (bad_token), or — if redeemed before the stop event voided it — the
    // VM-is-running check refuses it (vm_not_running). Either way no socket.
    assert_refused(
        &env,
        &t_stale,
        None,
        &[
            (StatusCode::FORBIDDEN, "bad_token"),
            (StatusCode::CONFLICT, "vm_not_running"),
        ],
    )
    .await;
    wait_for("the session to be unregistered", IO_TIMEOUT, || async {
        (env.server.state.console.active_sessions() == 0).then_some(())
    })
    .await;

    // The token never reached a log or a file; the access log did see the path.
    let log = logs.text();
    assert!(
        log.contains("/ws/console"),
        "no access log captured ({} bytes captured: {})",
        log.len(),
        log.chars().take(2000).collect::<String>()
    );
    for t in &tokens {
        assert!(!log.contains(t.as_str()), "a console token was logged");
        for f in files_under(&env.data_dir()) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "a console token is in {}",
                f.display()
            );
        }
    }
}
