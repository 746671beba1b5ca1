//! Serving connections: hyper's HTTP/1 server (with upgrades, for the console
//! WebSocket) over each accepted TCP socket, with TCP_NODELAY and the peer
//! address as axum's `ConnectInfo<SocketAddr>`.
//!
//! TCP_NODELAY: with Nagle's algorithm on, a small console frame (a
//! keystroke's echo, a cursor update) written while an earlier segment is
//! still unacked waits for that ACK — millisecond tails on echoes and a
//! stalled tail on every framebuffer update (compare `PVCE_BENCH_NAGLE=1` in
//! `benches/console_proxy.rs`). The relay sets it on its node side itself.
//!
//! hyper answers some requests itself before the router sees them, with an
//! empty body: a head larger than its read buffer (431), a request target
//! over 64 KiB (414, a hard limit of the `http` crate) and an unparsable
//! request (400). Its buffer and header bounds are raised
//! ([`super::limits::HYPER_MAX_BUF`]) so that the router's own limits
//! ([`super::limits`]) answer nearly every case in JSON; for what remains,
//! [`JsonAutoErrors`] replaces hyper's empty answer on the wire with the same
//! answer carrying API.md's JSON error body. Only such an answer is touched:
//! a whole write that is exactly a 400/414/431 head with `content-length: 0`
//! and no `content-type` (every answer the router produces has a JSON body).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::error::ApiError;
use super::limits::{HYPER_MAX_BUF, HYPER_MAX_HEADERS};

/// Accepts connections on `listener` forever, serving each with `router`.
pub async fn serve(listener: TcpListener, router: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: the error repeats
                // until something closes, so don't spin on it.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Console echoes must not wait for delayed ACKs.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        tokio::spawn(serve_connection(tcp, peer, router.clone()));
    }
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, router: Router) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS);
    let io = TokioIo::new(JsonAutoErrors::new(tcp));
    if let Err(e) = builder.serve_connection(io, service).with_upgrades().await {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// An I/O wrapper that rewrites hyper's automatic, empty-bodied error
/// answers (see the module doc) into JSON ones.
///
/// After such an answer hyper drops the connection while the client may still
/// be sending the oversized head; closing a socket with unread input makes
/// the kernel send a reset, which can destroy the answer before the client
/// reads it. So when dropped after a rewrite, the socket is closed gently:
/// our side shut down, the rest of the input read and discarded (bounded in
/// time and bytes) in a task of its own.
#[derive(Debug)]
pub struct JsonAutoErrors {
    inner: Option<TcpStream>,
    /// The replacement still to be written, from `written` on.
    pending: Vec<u8>,
    written: usize,
    rewrote: bool,
}

/// How long and how much a gentle close reads before giving up.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

impl JsonAutoErrors {
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner: Some(inner),
            pending: Vec::new(),
            written: 0,
            rewrote: false,
        }
    }

    /// The TCP socket, for a connection that leaves HTTP (a WebSocket);
    /// `Err(self)` while a rewritten answer is still being written.
    pub fn into_tcp(mut self) -> Result<TcpStream, Self> {
        if self.pending.is_empty()
            && let Some(tcp) = self.inner.take()
        {
            return Ok(tcp);
        }
        Err(self)
    }

    fn io(&mut self) -> io::Result<&mut TcpStream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self {
            inner,
            pending,
            written,
            ..
        } = self;
        while *written < pending.len() {
            let io = inner.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let n = ready!(Pin::new(io).poll_write(cx, &pending[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        pending.clear();
        *written = 0;
        Poll::Ready(Ok(()))
    }

    fn write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(replacement) = rewrite_auto_error(buf) {
            self.pending = replacement;
            self.rewrote = true;
            // hyper's bytes are taken; ours go out here or on the next flush.
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(self.io()?).poll_write(cx, buf)
    }
}

impl Drop for JsonAutoErrors {
    fn drop(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Some(mut tcp) = self.inner.take().filter(|_| self.rewrote) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tcp.shutdown().await;
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0;
            let _ = tokio::time::timeout(LINGER, async {
                while read < LINGER_BYTES {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
            })
            .await;
        });
    }
}

impl AsyncRead for JsonAutoErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.io()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonAutoErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_one(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        match (nonempty.next(), nonempty.next()) {
            // A lone head (hyper's automatic answers are one buffer).
            (Some(one), None) => self.write_one(cx, one),
            _ => {
                ready!(self.drain(cx))?;
                Pin::new(self.io()?).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(self.io()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(self.io()?).poll_shutdown(cx)
    }
}

/// If `buf` is exactly one of hyper's automatic error answers (a 400, 414 or
/// 431 head with `content-length: 0`, no `content-type`, nothing after it),
/// the same answer with a JSON body; otherwise `None`.
pub fn rewrite_auto_error(buf: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(rest.get(..3)?.as_bytes()).ok()?;
    if !matches!(status.as_u16(), 400 | 414 | 431) {
        return None;
    }
    let fields: Vec<&str> = lines.collect();
    let name = |f: &str| {
        f.split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let empty = fields.iter().any(|f| {
        name(f) == "content-length" && f.split_once(':').is_some_and(|(_, v)| v.trim() == "0")
    });
    if !empty || fields.iter().any(|f| name(f) == "content-type") {
        return None;
    }
    let body = ApiError::for_status(status).body_text();
    let mut out = format!("{status_line}\r\n");
    for f in fields
        .iter()
        .filter(|f| !matches!(name(f).as_str(), "content-length" | "connection"))
    {
        out.push_str(f);
        out.push_str("\r\n");
    }
    // hyper closes the connection after such an answer; say so.
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_hypers_empty_error_heads() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_auto_error(auto).expect("rewritten")).expect("utf-8");
        let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\ndate: Thu, 01 Jan 2026"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"], "headers_too_large");
        let uri = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        let out = String::from_utf8(rewrite_auto_error(uri).expect("rewritten")).expect("utf-8");
        assert!(out.contains("\"uri_too_long\""), "{out}");

        // Anything else passes untouched.
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"error\":\"x\"}",
            b"\xff\xfe",
        ] {
            assert_eq!(rewrite_auto_error(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }
}
