//! The console relays' WebSocket (RFC 6455): the server side of the upgrade
//! and of the framing, over the connection hyper hands over after `101`.
//!
//! Why pvce frames itself instead of using a WebSocket library: the relay is
//! a byte pipe, so it never needs whole messages. Browser → server payload
//! is unmasked in place in the read buffer and handed on as it arrives (a
//! frame may be relayed in several pieces, several frames may arrive in one
//! read); server → browser frames are a header written together with the
//! payload in one vectored write — no copy into a frame buffer, no
//! per-message allocation, no zero-filled read buffer. The zero-copy downlink
//! ([`super::downlink`]) writes its own header and splices the payload.
//!
//! Invariants of what the browser may send ([`Decoder`]): every frame masked,
//! no reserved bits, binary data only (a text frame ends the session with
//! [`super::close::UNSUPPORTED_DATA`]), continuation frames only inside a
//! fragmented message, control frames unfragmented and at most 125 bytes,
//! data frames at most [`MAX_FRAME`] bytes ([`super::close::TOO_BIG`]).
//! Control frames may come between the fragments of a message. A violation
//! ends the session with [`super::close::PROTOCOL`].
//!
//! The connection: a plain TCP socket when pvce's own serve loop
//! (`http::serve`) accepted it — the zero-copy downlink needs its file
//! descriptor — or any other I/O (another server, a test's in-memory pipe):
//! then everything goes through the copying path.

use std::future::Future;
use std::io::{self, IoSlice};

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ConsoleError;

/// The largest data frame a browser may send. The relay streams payload
/// (it never holds a whole frame), so this bounds nothing in memory; it
/// refuses what no console client sends (a clipboard paste is a few KiB).
pub const MAX_FRAME: u64 = 16 << 20;
/// Control frames carry at most this much (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;
/// Browser → server reads: that direction carries keys, pointer events and
/// update requests, so a small buffer (it grows for a large paste).
const READ_CHUNK: usize = 4 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What went wrong on a WebSocket: the browser broke the protocol (each
/// kind ends the session with its own close code), or the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("text frames are not accepted")]
    Text,
    #[error("a frame of {0} bytes is over the limit")]
    TooBig(u64),
    #[error("the connection ended")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close frame to send for this error (`None`: the browser is gone).
    pub fn close(&self) -> Option<(u16, &'static str)> {
        use super::close;
        match self {
            WsError::Protocol(_) => Some((close::PROTOCOL, "WebSocket protocol error")),
            WsError::Text => Some((close::UNSUPPORTED_DATA, "text frames are not accepted")),
            WsError::TooBig(_) => Some((close::TOO_BIG, "frame too large")),
            WsError::Closed | WsError::Io(_) => None,
        }
    }
}

// ---------------------------------------------------------------- upgrade

/// A request to open a WebSocket: checked (RFC 6455 §4.2.1), not yet
/// answered. [`Upgrade::on_upgrade`] answers `101` and runs the session.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
    offered: Vec<String>,
    protocol: Option<&'static str>,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("offered", &self.offered)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// True if the comma-separated header `name` lists `token` (any case).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

impl Upgrade {
    /// Checks a request's head for a WebSocket upgrade and takes hyper's
    /// upgrade handle out of it.
    pub fn from_parts(parts: &mut Parts) -> Result<Self, ConsoleError> {
        let h = &parts.headers;
        if parts.method != Method::GET {
            return Err(ConsoleError::NotWebSocket("the method must be GET"));
        }
        if !lists(h, header::CONNECTION, "upgrade") || !lists(h, header::UPGRADE, "websocket") {
            return Err(ConsoleError::NotWebSocket(
                "this endpoint needs a WebSocket upgrade",
            ));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(ConsoleError::NotWebSocket(
                "Sec-WebSocket-Version must be 13",
            ));
        }
        let key = h
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(ConsoleError::NotWebSocket("Sec-WebSocket-Key is missing"))?;
        let accept = HeaderValue::try_from(accept_key(key.as_bytes()))
            .map_err(|_| ConsoleError::NotWebSocket("bad Sec-WebSocket-Key"))?;
        let offered = h
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .collect();
        let on_upgrade =
            parts
                .extensions
                .remove::<OnUpgrade>()
                .ok_or(ConsoleError::NotWebSocket(
                    "the connection cannot be upgraded",
                ))?;
        Ok(Self {
            on_upgrade,
            accept,
            offered,
            protocol: None,
        })
    }

    /// Answers with subprotocol `name` if the client offered it (noVNC and
    /// websockify clients ask for `binary`).
    #[must_use]
    pub fn protocol(mut self, name: &'static str) -> Self {
        if self.offered.iter().any(|p| p == name) {
            self.protocol = Some(name);
        }
        self
    }

    /// Answers `101 Switching Protocols` and, once hyper hands the
    /// connection over, runs `session` on it in a task of its own.
    pub fn on_upgrade<F, Fut>(self, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => session(Socket::from_upgraded(upgraded)).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        if let Some(p) = self.protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        res
    }
}

// ---------------------------------------------------------------- socket

/// Any connection the copying path can use.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An upgraded WebSocket connection, with the bytes hyper read past the
/// request (a browser may send its first frame right behind it).
pub struct Socket {
    tcp: Option<TcpStream>,
    other: Option<Box<dyn Io>>,
    early: Bytes,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("tcp", &self.tcp)
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// The plain TCP socket under pvce's serve loop when hyper's connection
    /// is one; anything else stays wrapped (copying path).
    fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> Self {
        use crate::http::serve::JsonAutoErrors;
        match upgraded.downcast::<TokioIo<JsonAutoErrors>>() {
            Ok(parts) => match parts.io.into_inner().into_tcp() {
                Ok(tcp) => Self {
                    tcp: Some(tcp),
                    other: None,
                    early: parts.read_buf,
                },
                Err(io) => Self {
                    tcp: None,
                    other: Some(Box::new(io)),
                    early: parts.read_buf,
                },
            },
            Err(upgraded) => Self::from_io(TokioIo::new(upgraded)),
        }
    }

    /// A WebSocket over any I/O, always on the copying path.
    pub fn from_io(io: impl Io + 'static) -> Self {
        Self {
            tcp: None,
            other: Some(Box::new(io)),
            early: Bytes::new(),
        }
    }

    /// A WebSocket over a plain TCP socket whose handshake is done.
    pub fn from_tcp(tcp: TcpStream) -> Self {
        Self {
            tcp: Some(tcp),
            other: None,
            early: Bytes::new(),
        }
    }

    /// The two directions, borrowing the socket for the session's length.
    pub fn split(&mut self) -> (Reader<'_>, Writer<'_>) {
        let early = BytesMut::from(std::mem::take(&mut self.early));
        let (rd, wr) = match (&self.tcp, self.other.take()) {
            (Some(tcp), _) => (ReadSide::Tcp(tcp), WriteSide::Tcp(tcp)),
            (None, Some(io)) => {
                let (r, w) = tokio::io::split(io);
                (ReadSide::Other(r), WriteSide::Other(w))
            }
            // Split twice: the second one sees a closed connection.
            (None, None) => (ReadSide::Gone, WriteSide::Gone),
        };
        (
            Reader {
                io: rd,
                buf: early,
                decoder: Decoder::default(),
            },
            Writer { io: wr },
        )
    }
}

enum ReadSide<'a> {
    Tcp(&'a TcpStream),
    Other(tokio::io::ReadHalf<Box<dyn Io>>),
    Gone,
}

impl ReadSide<'_> {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadSide::Tcp(tcp) => loop {
                tcp.readable().await?;
                match tcp.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            },
            ReadSide::Other(r) => r.read_buf(buf).await,
            ReadSide::Gone => Ok(0),
        }
    }
}

enum WriteSide<'a> {
    Tcp(&'a TcpStream),
    Other(tokio::io::WriteHalf<Box<dyn Io>>),
    Gone,
}

// ---------------------------------------------------------------- reading

/// What the browser sent, as the relay needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Binary payload, unmasked: a whole frame or a piece of one.
    Data(Bytes),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(Bytes),
    /// A close frame and its status code, if it had one.
    Close(Option<u16>),
}

/// Where the decoder is inside a data frame's payload.
#[derive(Debug, Clone, Copy)]
struct Payload {
    left: u64,
    mask: [u8; 4],
    /// Offset into the mask of the next payload byte.
    phase: usize,
}

/// The browser → server frame decoder (module docs for what it refuses).
/// Pure: [`Decoder::decode`] takes bytes from a buffer and never waits.
#[derive(Debug, Default)]
pub struct Decoder {
    payload: Option<Payload>,
    /// Inside a fragmented message (its last frame not seen yet).
    fragmented: bool,
}

/// XORs `data` with `mask`, starting at mask offset `phase`.
fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(phase + i) % 4];
    }
    // Eight bytes at a time: the mask repeats every four.
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

impl Decoder {
    /// Takes the next event out of `buf`, or `None` if `buf` holds too
    /// little for one (the bytes stay for the next call).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WsError> {
        loop {
            if let Some(p) = &mut self.payload {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(p.left).map_or(buf.len(), |l| l.min(buf.len()));
                let mut chunk = buf.split_to(n);
                unmask(&mut chunk, p.mask, p.phase);
                p.phase = (p.phase + n) % 4;
                p.left -= n as u64;
                if p.left == 0 {
                    self.payload = None;
                }
                return Ok(Some(Incoming::Data(chunk.freeze())));
            }
            let Some(&[b0, b1]) = buf.get(..2) else {
                return Ok(None);
            };
            let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("unmasked frame from the client"));
            }
            let (len, at) = match b1 & 0x7f {
                126 => match buf.get(2..4) {
                    Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                    None => return Ok(None),
                },
                127 => match buf.get(2..10) {
                    Some(b) => {
                        let mut l = [0u8; 8];
                        l.copy_from_slice(b);
                        (u64::from_be_bytes(l), 10)
                    }
                    None => return Ok(None),
                },
                n => (u64::from(n), 2),
            };
            let Some(m) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            let mask = [m[0], m[1], m[2], m[3]];
            let head = at + 4;
            match opcode {
                OP_CLOSE | OP_PING | OP_PONG => {
                    if !fin {
                        return Err(WsError::Protocol("fragmented control frame"));
                    }
                    if len > MAX_CONTROL {
                        return Err(WsError::Protocol("control frame over 125 bytes"));
                    }
                    let len = len as usize;
                    if buf.len() < head + len {
                        return Ok(None);
                    }
                    buf.advance(head);
                    let mut body = buf.split_to(len);
                    unmask(&mut body, mask, 0);
                    match opcode {
                        OP_PING => return Ok(Some(Incoming::Ping(body.freeze()))),
                        OP_PONG => continue,
                        _ => {
                            return match body[..] {
                                [] => Ok(Some(Incoming::Close(None))),
                                [_] => Err(WsError::Protocol("close frame of one byte")),
                                [a, b, ..] => {
                                    Ok(Some(Incoming::Close(Some(u16::from_be_bytes([a, b])))))
                                }
                            };
                        }
                    }
                }
                OP_TEXT => return Err(WsError::Text),
                OP_BINARY if self.fragmented => {
                    return Err(WsError::Protocol("a new message inside a fragmented one"));
                }
                OP_CONTINUATION if !self.fragmented => {
                    return Err(WsError::Protocol("continuation frame outside a message"));
                }
                OP_BINARY | OP_CONTINUATION => {
                    if len > MAX_FRAME {
                        return Err(WsError::TooBig(len));
                    }
                    buf.advance(head);
                    self.fragmented = !fin;
                    if len > 0 {
                        self.payload = Some(Payload {
                            left: len,
                            mask,
                            phase: 0,
                        });
                    }
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }
}

/// The browser → server direction of a [`Socket`].
pub struct Reader<'a> {
    io: ReadSide<'a>,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader<'_> {
    /// The next event from the browser; [`WsError::Closed`] when the
    /// connection ended without a close frame. Cancel-safe.
    pub async fn next(&mut self) -> Result<Incoming, WsError> {
        loop {
            if let Some(ev) = self.decoder.decode(&mut self.buf)? {
                return Ok(ev);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(WsError::Closed);
            }
        }
    }
}

// ---------------------------------------------------------------- writing

/// A server → browser frame header (FIN set, unmasked) for `len` payload
/// bytes: the buffer and how much of it is used.
pub fn frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    let n = match len {
        0..=125 => {
            h[1] = len as u8;
            2
        }
        126..=0xffff => {
            h[1] = 126;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            h[1] = 127;
            h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (h, n)
}

/// The header of a binary frame of `len` bytes.
pub fn binary_header(len: usize) -> ([u8; 10], usize) {
    frame_header(OP_BINARY, len)
}

/// The server → browser direction of a [`Socket`].
pub struct Writer<'a> {
    io: WriteSide<'a>,
}

impl<'a> Writer<'a> {
    /// The browser's TCP socket, if the connection is a plain one (for the
    /// zero-copy downlink).
    pub fn tcp(&self) -> Option<&'a TcpStream> {
        match self.io {
            WriteSide::Tcp(t) => Some(t),
            _ => None,
        }
    }

    /// Writes all of `bufs`, as few system calls as the socket allows.
    async fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !bufs.is_empty() {
            let n = match &mut self.io {
                WriteSide::Tcp(tcp) => {
                    tcp.writable().await?;
                    match tcp.try_write_vectored(bufs) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => r?,
                    }
                }
                WriteSide::Other(w) => w.write_vectored(bufs).await?,
                WriteSide::Gone => 0,
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        if let WriteSide::Other(w) = &mut self.io {
            // A wrapped connection may buffer (TLS); a frame must go out.
            w.flush().await?;
        }
        Ok(())
    }

    async fn frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let (h, n) = frame_header(opcode, payload.len());
        self.write_all_vectored(&mut [IoSlice::new(&h[..n]), IoSlice::new(payload)])
            .await
    }

    /// One binary message.
    pub async fn binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(OP_BINARY, payload).await
    }

    /// A ping (the relays send one now and then to keep proxies from
    /// cutting a quiet console).
    pub async fn ping(&mut self) -> io::Result<()> {
        self.frame(OP_PING, &[]).await
    }

    /// The answer to a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(OP_PONG, payload).await
    }

    /// A close frame with `code` and `reason` (cut to the 123 bytes a
    /// control frame leaves, at a character boundary).
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut body = Vec::with_capacity(2 + end);
        body.extend_from_slice(&code.to_be_bytes());
        body.extend_from_slice(&reason.as_bytes()[..end]);
        self.frame(OP_CLOSE, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN as given, masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `wire` to a decoder in pieces of `step` bytes; returns the
    /// events, data pieces joined into one per message boundary kept apart.
    fn decode_all(wire: &[u8], step: usize) -> Result<Vec<Incoming>, WsError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out: Vec<Incoming> = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(ev) = d.decode(&mut buf)? {
                match (ev, out.last_mut()) {
                    (Incoming::Data(b), Some(Incoming::Data(prev))) => {
                        let mut joined = prev.to_vec();
                        joined.extend_from_slice(&b);
                        *prev = joined.into();
                    }
                    (ev, _) => out.push(ev),
                }
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        Ok(out)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn masked_frames_of_every_length_encoding_decode_in_any_pieces() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 1, 125, 126, 65535, 65536, 200_000] {
            let p = pattern(len);
            let wire = client_frame(true, OP_BINARY, &p, mask);
            let want: Vec<Incoming> = if len == 0 {
                vec![]
            } else {
                vec![Incoming::Data(p.clone().into())]
            };
            for step in [1, 3, 7, 4096, wire.len()] {
                let got = decode_all(&wire, step).expect("decodes");
                assert_eq!(got, want, "length {len}, pieces of {step}");
            }
        }
    }

    #[test]
    fn unmasking_matches_the_byte_by_byte_rule_at_every_phase() {
        let mask = [1, 2, 3, 250];
        let data = pattern(37);
        for phase in 0..4 {
            let mut fast = data.clone();
            unmask(&mut fast, mask, phase);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(phase + i) % 4])
                .collect();
            assert_eq!(fast, slow, "phase {phase}");
        }
    }

    #[test]
    fn fragments_join_and_control_frames_come_between_them() {
        let m = [9, 8, 7, 6];
        let mut wire = client_frame(false, OP_BINARY, b"hello ", m);
        wire.extend(client_frame(true, OP_PING, b"p1", m));
        wire.extend(client_frame(true, OP_PONG, b"", m));
        wire.extend(client_frame(false, OP_CONTINUATION, b"wide ", m));
        wire.extend(client_frame(true, OP_CONTINUATION, b"world", m));
        wire.extend(client_frame(true, OP_BINARY, b"!", m));
        wire.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes(), m));
        for step in [1, 2, 5, wire.len()] {
            let got = decode_all(&wire, step).expect("decodes");
            assert_eq!(
                got,
                vec![
                    Incoming::Data(Bytes::from_static(b"hello ")),
                    Incoming::Ping(Bytes::from_static(b"p1")),
                    Incoming::Data(Bytes::from_static(b"wide world!")),
                    Incoming::Close(Some(1000)),
                ],
                "pieces of {step}"
            );
        }
        assert_eq!(
            decode_all(&client_frame(true, OP_CLOSE, b"", m), 1).expect("decodes"),
            vec![Incoming::Close(None)]
        );
    }

    #[test]
    fn what_the_browser_may_not_send_is_refused() {
        let m = [1, 2, 3, 4];
        let err = |wire: Vec<u8>| decode_all(&wire, wire.len()).expect_err("refused");
        assert!(matches!(
            err(client_frame(true, OP_TEXT, b"hi", m)),
            WsError::Text
        ));
        let mut unmasked = client_frame(true, OP_BINARY, b"hi", m);
        unmasked[1] &= 0x7f;
        assert!(matches!(err(unmasked), WsError::Protocol(_)));
        let mut rsv = client_frame(true, OP_BINARY, b"hi", m);
        rsv[0] |= 0x40;
        assert!(matches!(err(rsv), WsError::Protocol(_)));
        assert!(matches!(
            err(client_frame(true, OP_CONTINUATION, b"x", m)),
            WsError::Protocol(_)
        ));
        let mut two_starts = client_frame(false, OP_BINARY, b"a", m);
        two_starts.extend(client_frame(true, OP_BINARY, b"b", m));
        assert!(matches!(err(two_starts), WsError::Protocol(_)));
        assert!(matches!(
            err(client_frame(false, OP_PING, b"", m)),
            WsError::Protocol(_)
        ));
        assert!(matches!(
            err(client_frame(true, OP_PING, &[0; 126], m)),
            WsError::Protocol(_)
        ));
        assert!(matches!(
            err(client_frame(true, OP_CLOSE, &[3], m)),
            WsError::Protocol(_)
        ));
        assert!(matches!(
            err(client_frame(true, 0x3, b"", m)),
            WsError::Protocol(_)
        ));
        // Oversize: refused from the header alone, before any payload.
        let mut big = vec![0x80 | OP_BINARY, 0x80 | 127];
        big.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        big.extend_from_slice(&m);
        assert!(matches!(err(big), WsError::TooBig(n) if n == MAX_FRAME + 1));
        let mut at_limit = vec![0x80 | OP_BINARY, 0x80 | 127];
        at_limit.extend_from_slice(&MAX_FRAME.to_be_bytes());
        at_limit.extend_from_slice(&m);
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&at_limit[..]);
        assert_eq!(d.decode(&mut buf).expect("at the limit is fine"), None);
        // Each refusal names the close code the relay sends.
        assert_eq!(WsError::Text.close().map(|c| c.0), Some(1003));
        assert_eq!(WsError::TooBig(1).close().map(|c| c.0), Some(1009));
        assert_eq!(WsError::Protocol("x").close().map(|c| c.0), Some(1002));
        assert_eq!(WsError::Closed.close(), None);
    }

    #[test]
    fn server_headers_use_the_shortest_length_encoding() {
        let (h, n) = binary_header(5);
        assert_eq!(&h[..n], &[0x82, 5]);
        let (h, n) = binary_header(126);
        assert_eq!(&h[..n], &[0x82, 126, 0, 126]);
        let (h, n) = binary_header(65535);
        assert_eq!(&h[..n], &[0x82, 126, 0xff, 0xff]);
        let (h, n) = binary_header(65536);
        assert_eq!(&h[..n], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// Frames written by [`Writer`] read back by a real client library.
    #[tokio::test]
    async fn a_websocket_library_reads_what_the_writer_writes() {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message as M;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut sock = Socket::from_io(a);
        let client = tokio::spawn(async move {
            let mut ws =
                tokio_tungstenite::WebSocketStream::from_raw_socket(b, Role::Client, None).await;
            let mut got = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                let end = matches!(m, M::Close(_));
                got.push(m);
                if end {
                    break;
                }
            }
            got
        });
        let (_rd, mut wr) = sock.split();
        let big = pattern(70_000);
        wr.binary(b"abc").await.expect("write");
        wr.binary(&big).await.expect("write");
        wr.ping().await.expect("write");
        wr.close(4001, "VM stopped").await.expect("write");
        let got = client.await.expect("client");
        assert_eq!(got[0], M::Binary(Bytes::from_static(b"abc")));
        assert_eq!(got[1], M::Binary(big.into()));
        assert!(matches!(got[2], M::Ping(_)));
        match &got[3] {
            M::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 4001);
                assert_eq!(f.reason.as_str(), "VM stopped");
            }
            other => panic!("expected a close, got {other:?}"),
        }
    }
}
