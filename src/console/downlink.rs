//! The relay's bulk direction, node → browser: a VNC server's framebuffer
//! updates, hundreds of MB/s on a busy desktop. Each read from the node
//! becomes one binary WebSocket frame (server frames are unmasked, so the
//! payload passes untouched).
//!
//! Zero-copy when the browser's connection is a plain TCP socket (pvce's own
//! serve loop, no TLS in the process): `splice(2)` moves what the node sent
//! into a pipe (enlarged to [`PIPE_SIZE`]), which says how many bytes the
//! frame has; the frame header goes out with `MSG_MORE` (so it shares a
//! segment with the payload) and a second `splice` moves the pipe into the
//! browser's socket. The bytes never enter pvce's memory. A small frame (at
//! most [`SMALL_FRAME`]: a keystroke's echo, a cursor) is read back from the
//! pipe and written with its header in one plain write instead, so it
//! leaves at once as one segment and nothing of it ever waits behind
//! `MSG_MORE`; copying a few KiB costs less than the second system call
//! the header would need. Otherwise (TLS,
//! another server's connection, no pipe to be had) the copying path: one
//! large reusable buffer, header and payload in one vectored write.
//!
//! Either way a frame is written whole before anything else (a ping, a
//! pong, a close) goes to the browser: [`Downlink::forward`] is not
//! cancelled half-way by the relay. A slow browser backs up into the node's
//! socket (nothing is read ahead), as before.

use std::io;
use std::os::fd::OwnedFd;

use bytes::BytesMut;
use rustix::net::SendFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::ws::{Writer, binary_header};

/// The copying path's buffer: large reads mean few frames and system calls.
pub const COPY_BUF: usize = 256 * 1024;
/// The pipe the zero-copy path asks for: Linux's default `fs.pipe-max-size`
/// (the kernel's default pipe is 64 KiB), so one splice in and one out per
/// MiB of a busy desktop. Tried on the benchmark (`console_proxy`, one run
/// each): a 4 MiB pipe (root may have one) cost pvce as much CPU per GB,
/// and the benchmark's client and server 15 % more (more bytes in flight,
/// so colder caches where they copy) for 15 % less throughput; a 256 KiB
/// one cost pvce 30 % more.
pub const PIPE_SIZE: usize = 1 << 20;
/// Frames up to this size leave in one write without `MSG_MORE` (module docs).
pub const SMALL_FRAME: usize = 16 * 1024;

/// A pipe for splicing, both ends non-blocking.
struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    size: usize,
    /// A small frame's payload, read back from the pipe ([`SMALL_FRAME`]).
    small: Box<[u8]>,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (rd, wr) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A smaller pipe still works, with smaller frames.
        let size = rustix::pipe::fcntl_setpipe_size(&wr, PIPE_SIZE)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&wr))?;
        Ok(Self {
            rd,
            wr,
            size,
            small: vec![0; SMALL_FRAME].into_boxed_slice(),
        })
    }
}

enum Mode<'a> {
    Copy { buf: BytesMut, eof: bool },
    Splice { pipe: Pipe, browser: &'a TcpStream },
}

/// Node → browser for one session (module docs).
pub struct Downlink<'a> {
    mode: Mode<'a>,
}

/// What one [`Downlink::forward`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// A frame of this many payload bytes went to the browser.
    Frame(usize),
    /// The node had nothing after all (readiness can be spurious).
    Nothing,
    /// The node closed the connection.
    End,
}

impl<'a> Downlink<'a> {
    /// Zero-copy if `writer` is a plain TCP socket and a pipe can be had.
    pub fn new(writer: &Writer<'a>) -> Self {
        match writer.tcp().map(|b| (b, Pipe::new())) {
            Some((browser, Ok(pipe))) => Self {
                mode: Mode::Splice { pipe, browser },
            },
            Some((_, Err(e))) => {
                tracing::debug!(error = %e, "no pipe for the console relay; copying");
                Self::copying()
            }
            None => Self::copying(),
        }
    }

    /// Always the copying path.
    pub fn copying() -> Self {
        Self {
            mode: Mode::Copy {
                buf: BytesMut::with_capacity(COPY_BUF),
                eof: false,
            },
        }
    }

    pub fn is_zero_copy(&self) -> bool {
        matches!(self.mode, Mode::Splice { .. })
    }

    /// Waits until the node has sent something, closed or failed (a
    /// failure reads as the end: [`Forwarded::End`]). Cancel-safe.
    pub async fn ready(&mut self, node: &TcpStream) {
        match &mut self.mode {
            Mode::Copy { buf, eof } => {
                if !buf.is_empty() || *eof {
                    return;
                }
                loop {
                    if node.readable().await.is_err() {
                        *eof = true;
                        return;
                    }
                    match node.try_read_buf(buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        r => {
                            *eof = !matches!(r, Ok(n) if n > 0);
                            return;
                        }
                    }
                }
            }
            // An error shows again in `forward`'s splice.
            Mode::Splice { .. } => {
                let _ = node.readable().await;
            }
        }
    }

    /// Sends what the node has as one frame, written whole (not to be
    /// cancelled: a frame cut short would corrupt the stream). An error is
    /// the browser's socket failing; the node's failures are [`Forwarded::End`].
    pub async fn forward(
        &mut self,
        node: &TcpStream,
        writer: &mut Writer<'_>,
    ) -> io::Result<Forwarded> {
        match &mut self.mode {
            Mode::Copy { buf, eof } => {
                if buf.is_empty() {
                    return Ok(if *eof {
                        Forwarded::End
                    } else {
                        Forwarded::Nothing
                    });
                }
                writer.binary(buf).await?;
                let n = buf.len();
                buf.clear();
                Ok(Forwarded::Frame(n))
            }
            Mode::Splice { pipe, browser } => {
                let browser: &TcpStream = browser;
                let spliced = node.try_io(Interest::READABLE, || {
                    Ok(rustix::pipe::splice(
                        node,
                        None,
                        &pipe.wr,
                        None,
                        pipe.size,
                        SpliceFlags::NONBLOCK,
                    )?)
                });
                let n = match spliced {
                    Ok(0) => return Ok(Forwarded::End),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Forwarded::Nothing);
                    }
                    Err(_) => return Ok(Forwarded::End),
                };
                if n <= SMALL_FRAME {
                    // All `n` bytes are in the pipe: reads never wait.
                    let mut got = 0;
                    while got < n {
                        match rustix::io::read(&pipe.rd, &mut pipe.small[got..n]) {
                            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                            Ok(k) => got += k,
                            Err(rustix::io::Errno::INTR) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    writer.binary(&pipe.small[..n]).await?;
                    return Ok(Forwarded::Frame(n));
                }
                let (h, len) = binary_header(n);
                let mut head = &h[..len];
                while !head.is_empty() {
                    browser.writable().await?;
                    let sent = browser.try_io(Interest::WRITABLE, || {
                        Ok(rustix::net::send(
                            browser,
                            head,
                            SendFlags::MORE | SendFlags::NOSIGNAL,
                        )?)
                    });
                    match sent {
                        Ok(k) => head = &head[k..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                let mut left = n;
                while left > 0 {
                    browser.writable().await?;
                    let moved = browser.try_io(Interest::WRITABLE, || {
                        Ok(rustix::pipe::splice(
                            &pipe.rd,
                            None,
                            browser,
                            None,
                            left,
                            SpliceFlags::NONBLOCK,
                        )?)
                    });
                    match moved {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => left -= k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Forwarded::Frame(n))
            }
        }
    }
}
