//! Shared by the console benches (`console_proxy`, `console_load`): a
//! synthetic VNC-like server, an RFB-ish client over plain TCP or a
//! WebSocket, pvce's real relay mounted the way `/ws/console` mounts it (in a
//! child process, so its CPU and RSS are its own), and small stats helpers.
//!
//! Loopback only: everything binds and connects to 127.0.0.1.
//!
//! The synthetic server speaks just enough RFB to be honest about message
//! sizes: the 3.8 handshake with security type None (so pvce's relay does
//! its node-side handshake as with a real console), ServerInit, then it answers a
//! FramebufferUpdateRequest (type 3) with one Raw rectangle of w×h×4 bytes,
//! and answers a KeyEvent (type 4) with the 8×16 glyph a terminal would draw
//! (a 512-byte Raw update) — the round trip a keystroke sees in a real VNC
//! session. SetEncodings (type 2) is read and ignored.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use pvce::console::{self, ConsoleError, ConsoleHub};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const VERSION: &[u8; 12] = b"RFB 003.008\n";
/// The rectangle a keystroke's echo redraws (one 8×16 glyph).
pub const GLYPH: (u16, u16) = (8, 16);
const PATTERN_LEN: usize = 8 << 20;
const SMALL_REPLY: usize = 64 * 1024;

/// Reads a `NAME` environment variable, falling back to `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Parses "WxH".
pub fn env_size(name: &str, default: (u16, u16)) -> (u16, u16) {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let (w, h) = v.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or(default)
}

// ---------------------------------------------------------------- server

/// Starts the synthetic VNC-like server on an ephemeral loopback port.
pub async fn spawn_vnc_like() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Non-zero "pixels", shared by every connection (no per-reply allocation).
    let pattern: Bytes = (0..PATTERN_LEN)
        .map(|i| (i % 251) as u8 | 1)
        .collect::<Vec<_>>()
        .into();
    tokio::spawn(async move {
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_vnc_like(sock, pattern.clone()));
            }
        }
    });
    addr
}

/// ServerInit: 1920×1080, 32 bpp true colour, name "bench".
fn server_init() -> Vec<u8> {
    let mut b = Vec::with_capacity(29);
    b.extend_from_slice(&1920u16.to_be_bytes());
    b.extend_from_slice(&1080u16.to_be_bytes());
    b.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    b.extend_from_slice(&5u32.to_be_bytes());
    b.extend_from_slice(b"bench");
    b
}

fn fbu_header(w: u16, h: u16) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[3] = 1; // FramebufferUpdate, 1 rectangle
    b[8..10].copy_from_slice(&w.to_be_bytes());
    b[10..12].copy_from_slice(&h.to_be_bytes());
    // x = y = 0, encoding 0 (Raw)
    b
}

async fn serve_vnc_like(sock: TcpStream, pattern: Bytes) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(VERSION).await?;
    let mut v = [0u8; 12];
    rd.read_exact(&mut v).await?;
    wr.write_all(&[1, 1]).await?; // one security type: None
    if rd.read_u8().await? != 1 {
        return Ok(());
    }
    wr.write_all(&[0, 0, 0, 0]).await?; // SecurityResult OK
    rd.read_u8().await?; // ClientInit
    wr.write_all(&server_init()).await?;
    let mut small = Vec::with_capacity(16 + SMALL_REPLY);
    loop {
        let Ok(t) = rd.read_u8().await else {
            return Ok(());
        };
        let (w, h) = match t {
            3 => {
                let mut b = [0u8; 9];
                rd.read_exact(&mut b).await?;
                (
                    u16::from_be_bytes([b[5], b[6]]),
                    u16::from_be_bytes([b[7], b[8]]),
                )
            }
            4 => {
                let mut b = [0u8; 7];
                rd.read_exact(&mut b).await?;
                GLYPH
            }
            2 => {
                let mut b = [0u8; 3];
                rd.read_exact(&mut b).await?;
                let n = usize::from(u16::from_be_bytes([b[1], b[2]]));
                let mut skip = vec![0u8; 4 * n];
                rd.read_exact(&mut skip).await?;
                continue;
            }
            _ => return Ok(()),
        };
        let header = fbu_header(w, h);
        let len = usize::from(w) * usize::from(h) * 4;
        if len <= SMALL_REPLY {
            small.clear();
            small.extend_from_slice(&header);
            small.extend_from_slice(&pattern[..len]);
            wr.write_all(&small).await?;
        } else {
            wr.write_all(&header).await?;
            let mut left = len;
            while left > 0 {
                let n = left.min(pattern.len());
                wr.write_all(&pattern[..n]).await?;
                left -= n;
            }
        }
    }
}

// ---------------------------------------------------------------- client

/// Bytes the client reads at a time, on every path (the same for direct
/// TCP, pvce and websockify, so the client's own cost per GB is the same).
const CLIENT_READ: usize = 256 * 1024;

/// Where a WebSocket client is in the server's byte stream.
#[derive(Default)]
struct WsIn {
    /// Payload bytes of the current data frame not yet in the buffer's
    /// consumed part (0: the next bytes are a frame header).
    left: u64,
}

/// An RFB-ish client of the synthetic server, directly or through a proxy.
///
/// Over a WebSocket it is a streaming RFC 6455 client of its own (the
/// handshake with key and `Sec-WebSocket-Accept` check, masked frames out,
/// pings answered, fragments and control frames between them handled, a
/// close or a text frame ending the session), reading into one buffer of
/// [`CLIENT_READ`] bytes and taking the RFB stream straight out of the frames'
/// payload: no per-message allocation or copy, as on the direct path. (A
/// WebSocket library that hands out whole messages — tungstenite, as before —
/// costs the client about twice as much per GB on large frames as on small
/// ones, which made the client, not the proxy, decide the throughput on
/// these shared 2 cores and favoured proxies with small frames.)
pub struct RfbClient {
    sock: TcpStream,
    /// `None`: plain TCP.
    ws: Option<WsIn>,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
}

impl RfbClient {
    /// A direct TCP connection, banner read.
    pub async fn tcp(addr: SocketAddr) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = Self::new(s, None);
        c.banner().await?;
        Ok(c)
    }

    fn new(sock: TcpStream, ws: Option<WsIn>) -> Self {
        Self {
            sock,
            ws,
            buf: vec![0u8; CLIENT_READ],
            pos: 0,
            end: 0,
        }
    }

    /// A WebSocket (subprotocol `binary`, as noVNC asks) to `url`
    /// (`ws://host:port/path?query`), banner read.
    pub async fn ws(url: &str, origin: Option<&str>) -> anyhow::Result<Self> {
        use base64::Engine;
        use sha1::{Digest, Sha1};
        let rest = url.strip_prefix("ws://").context("not a ws:// URL")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let s = TcpStream::connect(host).await?;
        s.set_nodelay(true)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.encode(rand::random::<[u8; 16]>());
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
        );
        if let Some(o) = origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        let mut c = Self::new(s, Some(WsIn::default()));
        c.sock.write_all(req.as_bytes()).await?;
        // The answer's head; what follows it is already the WebSocket stream.
        let head_end = loop {
            if let Some(i) = c.buf[..c.end].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if c.end == c.buf.len() {
                bail!("WebSocket handshake: answer head too large");
            }
            let n = c.sock.read(&mut c.buf[c.end..]).await?;
            if n == 0 {
                bail!("WebSocket handshake: connection closed");
            }
            c.end += n;
        };
        let head = String::from_utf8_lossy(&c.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("101") {
            bail!("WebSocket handshake refused: {status}");
        }
        let field = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        if field("sec-websocket-accept") != Some(b64.encode(h.finalize())) {
            bail!("WebSocket handshake: wrong Sec-WebSocket-Accept");
        }
        c.pos = head_end;
        c.banner().await?;
        Ok(c)
    }

    /// The RFB 3.8 handshake with security type None, ClientInit, ServerInit.
    async fn banner(&mut self) -> anyhow::Result<()> {
        let mut v = [0u8; 12];
        self.read_exact(&mut v).await?;
        if &v != VERSION {
            bail!("bad banner {v:?}");
        }
        self.send(VERSION).await?;
        let mut n = [0u8; 1];
        self.read_exact(&mut n).await?;
        let mut types = vec![0u8; usize::from(n[0])];
        self.read_exact(&mut types).await?;
        if !types.contains(&1) {
            bail!("security type None not offered: {types:?}");
        }
        self.send(&[1]).await?;
        let mut result = [0u8; 4];
        self.read_exact(&mut result).await?;
        if result != [0; 4] {
            bail!("SecurityResult {result:?}");
        }
        self.send(&[1]).await?; // ClientInit, shared
        let mut init = [0u8; 24];
        self.read_exact(&mut init).await?;
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        self.skip(name_len as usize).await?;
        Ok(())
    }

    /// Reads more from the socket after the unconsumed bytes (moved to the
    /// buffer's start when they sit at its end).
    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.pos == self.end {
            (self.pos, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            (self.pos, self.end) = (0, self.end - self.pos);
        }
        let n = self.sock.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.end += n;
        Ok(())
    }

    /// The stream's bytes available now without reading, at `buf[pos..]`:
    /// on a WebSocket, only the current data frame's payload.
    fn available(&self) -> usize {
        let raw = self.end - self.pos;
        match &self.ws {
            None => raw,
            Some(ws) => raw.min(usize::try_from(ws.left).unwrap_or(usize::MAX)),
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if let Some(ws) = &mut self.ws {
            ws.left -= n as u64;
        }
    }

    /// Makes sure some of the stream's bytes are available: reads, and on a
    /// WebSocket steps over frame headers and control frames.
    async fn fill(&mut self) -> anyhow::Result<()> {
        while self.available() == 0 {
            if self.ws.is_none() || self.pos == self.end {
                self.read_more().await?;
                continue;
            }
            // A WebSocket frame header (RFC 6455 §5.2) at `pos`.
            let b = &self.buf[self.pos..self.end];
            if b.len() < 2 {
                self.read_more().await?;
                continue;
            }
            let (b0, b1) = (b[0], b[1]);
            if b1 & 0x80 != 0 || b0 & 0x70 != 0 {
                bail!("masked or reserved-bit frame from the server");
            }
            let (len, hlen) = match b1 & 0x7f {
                126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().context("header")?),
                    10,
                ),
                126 | 127 => {
                    self.read_more().await?;
                    continue;
                }
                n => (u64::from(n), 2),
            };
            match b0 & 0x0f {
                // Binary and its continuations: the RFB stream.
                0x0 | 0x2 => {
                    self.pos += hlen;
                    self.ws.as_mut().context("ws")?.left = len;
                }
                0x1 => bail!("text frame from the server"),
                op @ (0x8..=0xa) => {
                    let total = hlen + usize::try_from(len).context("control frame")?;
                    if len > 125 {
                        bail!("control frame of {len} bytes");
                    }
                    if self.end - self.pos < total {
                        self.read_more().await?;
                        continue;
                    }
                    let payload = self.buf[self.pos + hlen..self.pos + total].to_vec();
                    self.pos += total;
                    match op {
                        0x8 => bail!("WebSocket closed: {:?}", String::from_utf8_lossy(&payload)),
                        0x9 => self.frame_out(0xa, &payload).await?,
                        _ => {} // pong
                    }
                }
                op => bail!("unknown opcode {op}"),
            }
        }
        Ok(())
    }

    /// One masked client frame (a fresh random mask each, as browsers do).
    async fn frame_out(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = rand::random::<[u8; 4]>();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.sock.write_all(&f).await?;
        Ok(())
    }

    pub async fn read_exact(&mut self, out: &mut [u8]) -> anyhow::Result<()> {
        let mut got = 0;
        while got < out.len() {
            self.fill().await?;
            let n = self.available().min(out.len() - got);
            out[got..got + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.consume(n);
            got += n;
        }
        Ok(())
    }

    /// Consumes `n` bytes without copying them anywhere.
    pub async fn skip(&mut self, mut n: usize) -> anyhow::Result<()> {
        while n > 0 {
            self.fill().await?;
            let k = self.available().min(n);
            self.consume(k);
            n -= k;
        }
        Ok(())
    }

    pub async fn send(&mut self, b: &[u8]) -> anyhow::Result<()> {
        if self.ws.is_some() {
            self.frame_out(0x2, b).await
        } else {
            Ok(self.sock.write_all(b).await?)
        }
    }

    /// Reads one single-rectangle Raw FramebufferUpdate; returns its pixel bytes.
    async fn update(&mut self) -> anyhow::Result<usize> {
        let mut h = [0u8; 16];
        self.read_exact(&mut h).await?;
        if h[0] != 0 || h[3] != 1 {
            bail!("not a FramebufferUpdate: {h:?}");
        }
        let w = usize::from(u16::from_be_bytes([h[8], h[9]]));
        let hh = usize::from(u16::from_be_bytes([h[10], h[11]]));
        let n = w * hh * 4;
        self.skip(n).await?;
        Ok(n)
    }

    /// Requests a w×h update and reads it; returns its pixel bytes.
    pub async fn frame(&mut self, w: u16, h: u16) -> anyhow::Result<usize> {
        let mut req = [3u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        req[6..8].copy_from_slice(&w.to_be_bytes());
        req[8..10].copy_from_slice(&h.to_be_bytes());
        self.send(&req).await?;
        let n = self.update().await?;
        if n != usize::from(w) * usize::from(h) * 4 {
            bail!("short frame: {n} bytes");
        }
        Ok(n)
    }

    /// A key press and the glyph update it causes; returns the round trip.
    pub async fn key(&mut self) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        self.send(&[4, 1, 0, 0, 0, 0, 0, b'a']).await?;
        let n = self.update().await?;
        let rtt = t0.elapsed();
        if n != usize::from(GLYPH.0) * usize::from(GLYPH.1) * 4 {
            bail!("unexpected glyph update of {n} bytes");
        }
        Ok(rtt)
    }
}

// ---------------------------------------------------------------- pvce proxy

#[derive(Clone)]
struct ProxyState {
    hub: Arc<ConsoleHub>,
    target: console::ConsoleTarget,
}

#[derive(serde::Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    token: String,
}

fn refuse(e: &ConsoleError) -> Response {
    let status = match e {
        ConsoleError::BadToken | ConsoleError::BadOrigin => StatusCode::FORBIDDEN,
        ConsoleError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::CONFLICT,
    };
    (status, e.to_string()).into_response()
}

/// What `POST /api/vms/{id}/console` does, minus the VM lookup: a token for a
/// fresh (VM, user) pair, so the per-user limit counts one console per student.
async fn issue(State(s): State<ProxyState>) -> Response {
    let issued = s
        .hub
        .issue(
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::nil(),
            "boot".into(),
        )
        .await;
    match issued {
        Ok(token) => token.into_response(),
        Err(e) => refuse(&e),
    }
}

/// What `GET /ws/console` does (src/http/console.rs: Origin check, redeem,
/// then `ConsoleHub::upgrade` → `relay`), with the node console address
/// fixed to the synthetic server instead of looked up in libvirt.
async fn connect(
    State(s): State<ProxyState>,
    headers: HeaderMap,
    Query(q): Query<ConnectQuery>,
    ws: console::ws::Upgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let config = pvce::config::Config::for_data_dir("/nonexistent");
        let own = pvce::http::origin::own_origin(&headers, &config);
        let ok = origin
            .to_str()
            .is_ok_and(|o| pvce::http::origin::allowed(o, own.as_deref(), &[]));
        if !ok {
            return refuse(&ConsoleError::BadOrigin);
        }
    }
    let ticket = match s.hub.redeem(&q.token).await {
        Ok(t) => t,
        Err(e) => return refuse(&e),
    };
    s.hub.clone().upgrade(ws, ticket, s.target)
}

async fn stats(State(s): State<ProxyState>) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &s.hub.metrics;
    format!(
        "{} {} {} {}",
        s.hub.active_sessions(),
        m.bytes_to_client.load(Relaxed),
        m.bytes_to_node.load(Relaxed),
        m.refused_total.load(Relaxed)
    )
}

/// The child process's body: pvce's `ConsoleHub` with the server's default
/// limits and TTL (from `Config`), relaying to `PVCE_BENCH_TARGET`, served
/// as the server serves (`pvce::http::serve`: TCP_NODELAY on accepted sockets; set
/// `PVCE_BENCH_NAGLE=1` to compare without — axum's own serve loop, so the
/// relay takes its copying path instead of the zero-copy one). Prints
/// `LISTEN <addr>` once ready.
pub fn run_proxy_child() {
    let target: SocketAddr = std::env::var("PVCE_BENCH_TARGET").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let config = pvce::config::Config::for_data_dir("/nonexistent");
        // Tokens live in the database, as in the server (a file of its own:
        // the server's SQLite, WAL mode).
        let db = tempfile::tempdir().unwrap();
        let pool = pvce::db::connect(&format!("sqlite://{}/bench.db", db.path().display()))
            .await
            .unwrap();
        let hub = Arc::new(ConsoleHub::new(
            pool,
            Duration::from_secs(config.console_token_ttl_secs),
            config.console_max_per_user,
            config.console_max_total,
        ));
        let state = ProxyState {
            hub,
            target: console::ConsoleTarget {
                host: target.ip().to_string(),
                port: target.port(),
                protocol: pvce::libvirt::GraphicsKind::Vnc,
                password: None,
            },
        };
        let app = Router::new()
            .route("/token", post(issue))
            .route("/ws/console", get(connect))
            .route("/stats", get(stats))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTEN {}", listener.local_addr().unwrap());
        if std::env::var_os("PVCE_BENCH_NAGLE").is_some() {
            // For comparison: accepted sockets left with Nagle's algorithm on.
            axum::serve(listener, app).await.unwrap();
        } else {
            pvce::http::serve::serve(listener, app).await;
        }
    });
}

/// The pvce proxy running in a child process (this same executable).
pub struct ProxyChild {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl ProxyChild {
    pub async fn spawn(target: SocketAddr) -> ProxyChild {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env("PVCE_BENCH_ROLE", "proxy")
            .env("PVCE_BENCH_TARGET", target.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next_line().await.unwrap().unwrap();
        let addr = line.strip_prefix("LISTEN ").unwrap().parse().unwrap();
        ProxyChild {
            child,
            addr,
            http: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub async fn token(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .post(format!("http://{}/token", self.addr))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// A console session through pvce's relay, with a fresh token and the
    /// page's own Origin.
    pub async fn session(&self) -> anyhow::Result<RfbClient> {
        let token = self.token().await?;
        RfbClient::ws(
            &format!("ws://{}/ws/console?token={token}", self.addr),
            Some(&format!("http://{}", self.addr)),
        )
        .await
    }

    /// (active sessions, bytes to client, bytes to node, refused).
    pub async fn stats(&self) -> anyhow::Result<(u64, u64, u64, u64)> {
        let t = self
            .http
            .get(format!("http://{}/stats", self.addr))
            .send()
            .await?
            .text()
            .await?;
        let v: Vec<u64> = t.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
        Ok((v[0], v[1], v[2], v[3]))
    }
}

// ---------------------------------------------------------------- stats

/// (VmRSS, VmHWM) of a process in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Fields 3… of /proc/<pid>/stat (after the command name), so field N is at index N-3.
fn stat_fields(pid: &str) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace().map(str::to_owned).collect()
}

fn ticks(f: &[String], field: usize) -> f64 {
    f.get(field - 3)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 100.0
}

/// User+system CPU seconds of a process (utime + stime, fields 14 and 15).
pub fn cpu_secs(pid: &str) -> f64 {
    let f = stat_fields(pid);
    ticks(&f, 14) + ticks(&f, 15)
}

/// CPU seconds of a process, its live descendants and its reaped children
/// (websockify forks a process per connection).
pub fn tree_cpu_secs(pid: u32) -> f64 {
    let f = stat_fields(&pid.to_string());
    let mut total = ticks(&f, 14) + ticks(&f, 15) + ticks(&f, 16) + ticks(&f, 17);
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(child) = name.parse::<u32>() else {
                continue;
            };
            let cf = stat_fields(&name);
            if cf.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                total += tree_cpu_secs(child);
            }
        }
    }
    total
}

/// The load averages (1, 5, 15 minutes) as `uptime` prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `p`-th quantile (0–1) of `v`, sorting it in place; NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Percentile (0–100) of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------- real VMs

/// Removes the libvirt objects a bench's server made — domains and storage
/// pools whose names start with its prefix — when made (a run killed by a
/// signal skipped its `Drop`: its guests would still fill the node, its
/// pools would pile up) and again when dropped, also when the run panics
/// (benches with real guests). Declare it first, so the server is dropped
/// before it.
pub struct LibvirtLeftovers(&'static str);

impl LibvirtLeftovers {
    pub fn new(prefix: &'static str) -> Self {
        remove_leftovers(prefix);
        Self(prefix)
    }
}

impl Drop for LibvirtLeftovers {
    fn drop(&mut self) {
        remove_leftovers(self.0);
    }
}

fn virsh(args: &[&str]) -> String {
    std::process::Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn remove_leftovers(prefix: &str) {
    for name in virsh(&["list", "--name"]).lines() {
        if name.starts_with(prefix) {
            virsh(&["destroy", name]);
        }
    }
    for pool in virsh(&["pool-list", "--all", "--name"]).lines() {
        if pool.starts_with(prefix) {
            virsh(&["pool-destroy", pool]);
            virsh(&["pool-undefine", pool]);
        }
    }
}

pub const BENCH_PASSWORD: &str = "bench-password";

/// A bearer token for `user` (password [`BENCH_PASSWORD`]).
pub async fn login(http: &reqwest::Client, base: &str, user: &str) -> String {
    let v: serde_json::Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": user, "password": BENCH_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// POSTs `body` as `token`, asserting success; the JSON answer.
pub async fn post_ok(
    http: &reqwest::Client,
    token: &str,
    url: String,
    body: serde_json::Value,
) -> serde_json::Value {
    let r = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

/// A server on a fresh data dir with the built-in template library and a
/// teacher `bench-teacher` (the dir goes when the returned guard drops).
pub async fn lab_server(
    domain_prefix: &str,
    tweak: impl FnOnce(&mut pvce::config::Config),
) -> (tempfile::TempDir, pvce::app::Server) {
    let dir = tempfile::Builder::new()
        .prefix(domain_prefix)
        .tempdir()
        .unwrap();
    let mut config = pvce::config::Config::for_data_dir(dir.path().join("data"));
    // Its own libvirt names (template store `<prefix><id>-templates`):
    // beside a running server it never touches that server's pool.
    config.libvirt_prefix = domain_prefix.trim_end_matches('-').into();
    config.domain_prefix = Some(domain_prefix.into());
    tweak(&mut config);
    let server = pvce::app::start(config, "127.0.0.1:0").await.unwrap();
    let st = &server.state;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let limits = pvce::templates::ImportLimits {
        max_upload_bytes: u64::MAX,
        max_virtual_size: u64::MAX,
    };
    pvce::library::build(&st.pool, &st.storage, limits, &root.join("templates-tree"))
        .await
        .unwrap();
    bench_user(&st.pool, "bench-teacher", pvce::auth::Role::Teacher).await;
    (dir, server)
}

/// A user of `role` with the password [`BENCH_PASSWORD`].
pub async fn bench_user(
    pool: &pvce::db::Pool,
    username: &str,
    role: pvce::auth::Role,
) -> pvce::users::User {
    pvce::users::create(
        pool,
        pvce::users::NewUser {
            username: username.into(),
            password: BENCH_PASSWORD.into(),
            role,
            display_name: None,
        },
    )
    .await
    .unwrap()
}

/// A course `code` of `n` new students (`<code>-sNN`), each with one VM of
/// the tiny guest (`memory_mib`), made by `bench-teacher`: (course id, the
/// VMs' ids).
pub async fn tiny_class(
    server: &pvce::app::Server,
    token: &str,
    code: &str,
    n: usize,
    memory_mib: u32,
) -> (String, Vec<String>) {
    let st = &server.state;
    let base = server.url();
    let http = reqwest::Client::new();
    let mut names = vec![];
    for i in 0..n.max(1) {
        let u = format!("{}-s{i:03}", code.to_lowercase());
        bench_user(&st.pool, &u, pvce::auth::Role::Student).await;
        names.push(u);
    }
    let tiny = pvce::templates::find_by_name(&st.pool, "tiny-linux")
        .await
        .unwrap()
        .unwrap();
    let course = post_ok(
        &http,
        token,
        format!("{base}/api/courses"),
        serde_json::json!({"code": code, "name": code, "vm_specs": [
            {"name": "vm", "template_id": tiny.id, "vcpus": 1, "memory_mib": memory_mib}]}),
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    post_ok(
        &http,
        token,
        format!("{base}/api/courses/{cid}/students"),
        serde_json::json!({"usernames": names}),
    )
    .await;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM vms WHERE course_id = $1 ORDER BY id")
            .bind(&cid)
            .fetch_all(&st.pool)
            .await
            .unwrap();
    (cid, ids)
}

// ---------------------------------------------------------------- classes on disk

/// The unlimited import limits benches import their templates with.
pub const NO_LIMITS: pvce::templates::ImportLimits = pvce::templates::ImportLimits {
    max_upload_bytes: u64::MAX,
    max_virtual_size: u64::MAX,
};

/// A blank qcow2 template of `size` (`qemu-img` syntax, e.g. `1G`) imported
/// as `bench-base`, for benches that measure layers rather than a guest.
pub async fn blank_template(
    pool: &pvce::db::Pool,
    storage: &pvce::storage::Storage,
    work: &std::path::Path,
    size: &str,
) -> pvce::templates::Template {
    let src = work.join("base.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg(size)
        .status()
        .unwrap();
    assert!(st.success());
    let t = pvce::templates::import_local_file(
        pool,
        storage,
        NO_LIMITS,
        pvce::templates::ImportParams {
            name: "bench-base".into(),
            format: pvce::images::ImageFormat::Qcow2,
            os: "linux".into(),
            software: vec![],
            parent_id: None,
        },
        None,
        &src,
    )
    .await
    .unwrap();
    std::fs::remove_file(&src).unwrap();
    t
}

/// The teacher `bench-teacher` (password [`BENCH_PASSWORD`]) and `n`
/// students `bench-sNNNN`, these straight in SQL (hashing n argon2
/// passwords is not what benches measure): the teacher and the students'
/// usernames.
pub async fn teacher_and_students(
    pool: &pvce::db::Pool,
    n: usize,
) -> (pvce::users::User, Vec<String>) {
    let teacher = bench_user(pool, "bench-teacher", pvce::auth::Role::Teacher).await;
    let mut names = Vec::with_capacity(n);
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let name = format!("bench-s{i:04}");
        sqlx::query("INSERT INTO users (id, username, display_name, role, password_hash, created_at) VALUES ($1, $2, $3, 'student', 'x', '2026-01-01T00:00:00Z')")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&name)
            .bind(&name)
            .execute(&mut *tx)
            .await
            .unwrap();
        names.push(name);
    }
    tx.commit().await.unwrap();
    (teacher, names)
}

/// A course `code` of `teacher` with one VM spec per (name, template), each
/// 1 vCPU and `memory_mib`, no lab network.
pub async fn course(
    pool: &pvce::db::Pool,
    teacher: &pvce::users::User,
    code: &str,
    specs: &[(String, uuid::Uuid)],
    memory_mib: i64,
) -> pvce::courses::Course {
    pvce::courses::create(
        pool,
        teacher,
        pvce::courses::NewCourse {
            code: code.into(),
            name: code.into(),
            vm_specs: specs
                .iter()
                .map(|(name, template)| pvce::courses::NewVmSpec {
                    name: name.clone(),
                    template_id: *template,
                    vcpus: 1,
                    memory_mib,
                    graphics: None,
                })
                .collect(),
            lab_network: false,
            clipboard_to_guest: true,
            clipboard_from_guest: true,
            clipboard_agent: false,
            teacher_id: None,
        },
    )
    .await
    .unwrap()
}

/// Enrols `names` in `course` as its teacher does, layers on the shared
/// data dir.
pub async fn enrol(
    pool: &pvce::db::Pool,
    storage: &pvce::storage::Storage,
    course: &pvce::courses::Course,
    names: &[String],
) -> pvce::courses::EnrolReport {
    pvce::courses::enrol(
        pool,
        storage,
        pvce::vms::layers::LayerStorage::Shared,
        course,
        names,
        pvce::courses::EnrolSource::Teacher,
    )
    .await
    .unwrap()
}

// ------------------------------------------------------------ the node rig

/// The multi-node rig of `scripts/multinode.sh` (N libvirtd "nodes" in
/// their own namespaces on this machine), for benches that place VMs on
/// several nodes. Up when made, torn down when dropped (also on a panic).
/// Holds the rig lock the black-box tests take, so a bench and a test never
/// share the rig.
pub struct Rig {
    pub n: usize,
    _lock: std::fs::File,
}

impl Rig {
    pub fn up(n: usize) -> Rig {
        let lock = std::fs::File::create("/run/pvce-test-rig.lock").unwrap();
        lock.lock().unwrap();
        let rig = Rig { n, _lock: lock };
        rig.script(&["up", &n.to_string()]);
        rig
    }

    fn script(&self, args: &[&str]) -> bool {
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/multinode.sh"))
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "multinode.sh {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    /// Registers nodes 1..=n with the server (`rig-node<i>`) and removes the
    /// `local` node, so every VM is placed on the rig; waits until all are up.
    pub async fn register(&self, http: &reqwest::Client, base: &str, admin_token: &str) {
        let nodes = get_json(http, admin_token, format!("{base}/api/nodes")).await;
        let mut ids = Vec::new();
        for i in 1..=self.n {
            let addr = format!("10.77.{i}.2");
            let node = post_ok(
                http,
                admin_token,
                format!("{base}/api/nodes"),
                serde_json::json!({"name": format!("rig-node{i}"), "uri": format!("qemu+tcp://{addr}/system"), "console_address": addr}),
            )
            .await;
            ids.push(node["id"].as_str().unwrap().to_owned());
        }
        for n in nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["name"] == "local")
        {
            let r = http
                .delete(format!("{base}/api/nodes/{}", n["id"].as_str().unwrap()))
                .bearer_auth(admin_token)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "removing the local node: {}",
                r.status()
            );
        }
        let give_up = Instant::now() + Duration::from_secs(60);
        for id in &ids {
            loop {
                let n = get_json(http, admin_token, format!("{base}/api/nodes/{id}")).await;
                if n["state"] == "up" {
                    break;
                }
                assert!(Instant::now() < give_up, "rig node {id} not up: {n}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// GET `url` with the bearer token; the JSON answer.
async fn get_json(http: &reqwest::Client, token: &str, url: String) -> serde_json::Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.script(&["down"]);
    }
}
