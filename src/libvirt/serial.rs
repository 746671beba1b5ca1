//! A running domain's serial console as a byte stream (`virDomainOpenConsole`),
//! for the browser's rescue console.
//!
//! [`Node::open_serial`] opens the domain's first console (the `pty` serial
//! port every pvce domain has, see [`super::xml`]) on a non-blocking libvirt
//! stream and hands it to one pump thread per session, which the caller talks
//! to through two channels ([`SerialConsole`]).
//!
//! Why a pump thread that polls: libvirt streams are driven either blocking
//! (a `recv` that cannot be woken to send) or with an event callback, and the
//! `virt` crate's callback registration keeps a pointer to the `Stream` value
//! and stores the callback after registering it, which races with libvirt's
//! event thread. A non-blocking stream polled by its own thread needs neither:
//! it reads whatever libvirt's event loop has already received, writes what
//! the browser typed, and naps 1–20 ms (growing while idle, back to 1 ms after
//! any byte) when neither side has anything. A serial line carries ~11 KB/s;
//! the nap bounds the added latency to 20 ms after a quiet spell.
//!
//! Invariants:
//! - One session per console: opening uses `VIR_DOMAIN_CONSOLE_FORCE`, so a
//!   new session (a reconnect after a drop) takes over and the older stream
//!   ends; the console is never left held by a dead session.
//! - The stream ends (and is aborted on the node) as soon as the caller drops
//!   either channel end; the output channel closes when the guest side ends
//!   (the domain stopped, the node connection died, another session took over).
//! - Backpressure: the output channel is bounded and the pump waits on it, so
//!   a slow browser slows reading instead of growing a queue.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use virt::stream::Stream;

use super::LibvirtError;
use super::conn::{Node, lookup};

/// Chunks in flight each way.
const CHANNEL_DEPTH: usize = 64;
const READ_BUF: usize = 16 * 1024;
const MIN_NAP: Duration = Duration::from_millis(1);
const MAX_NAP: Duration = Duration::from_millis(20);

/// An open serial console: what the guest writes arrives on `output` (closed
/// when the console ends); what is sent on `input` goes to the guest. Dropping
/// either end closes the console.
#[derive(Debug)]
pub struct SerialConsole {
    pub output: mpsc::Receiver<Bytes>,
    pub input: mpsc::Sender<Bytes>,
}

impl Node {
    /// Opens the serial console of the running domain `name`, taking it over
    /// from any other session. `Ok(None)`: no such running domain.
    pub async fn open_serial(&self, name: &str) -> Result<Option<SerialConsole>, LibvirtError> {
        let name = name.to_owned();
        let stream = self
            .call(move |c| {
                let Some(dom) = lookup(c, &name)? else {
                    return Ok(None);
                };
                let stream = Stream::new(c, virt::sys::VIR_STREAM_NONBLOCK)?;
                match dom
                    .open_console(None, &stream, virt::sys::VIR_DOMAIN_CONSOLE_FORCE)
                    .map_err(LibvirtError::from)
                {
                    Ok(()) => Ok(Some(stream)),
                    Err(LibvirtError::NotFound) => Ok(None),
                    Err(e) if e.is_operation_invalid() => Ok(None), // not running
                    Err(e) => Err(e),
                }
            })
            .await?;
        let Some(stream) = stream else {
            return Ok(None);
        };
        let (out_tx, output) = mpsc::channel(CHANNEL_DEPTH);
        let (input, in_rx) = mpsc::channel(CHANNEL_DEPTH);
        std::thread::Builder::new()
            .name("libvirt-serial".into())
            .spawn(move || pump(&stream, &out_tx, in_rx))
            .map_err(|e| LibvirtError::Unreachable(format!("cannot start a serial thread: {e}")))?;
        Ok(Some(SerialConsole { output, input }))
    }
}

/// How a pump ended, which decides whether the stream is finished or aborted.
enum End {
    /// The guest side closed the stream (EOF).
    Eof,
    /// The caller hung up, or the stream failed.
    Abort,
}

/// Moves bytes between the stream and the channels until either side ends.
fn pump(stream: &Stream, output: &mpsc::Sender<Bytes>, mut input: mpsc::Receiver<Bytes>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut pending = Bytes::new();
    let mut nap = MIN_NAP;
    let end = loop {
        let mut busy = false;
        // Guest → caller. `recv` answers -2 when nothing has arrived yet.
        match stream.recv(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) if n > 0 => {
                busy = true;
                let n = usize::try_from(n).unwrap_or(0).min(buf.len());
                if output
                    .blocking_send(Bytes::copy_from_slice(&buf[..n]))
                    .is_err()
                {
                    break End::Abort;
                }
            }
            Ok(_) => {}
            Err(_) => break End::Abort,
        }
        // Caller → guest, keeping what the stream could not take yet.
        if pending.is_empty() {
            match input.try_recv() {
                Ok(b) => pending = b,
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => break End::Abort,
            }
        }
        if !pending.is_empty() {
            match stream.send(&pending) {
                Ok(n) if n > 0 => {
                    busy = true;
                    let n = usize::try_from(n).unwrap_or(0).min(pending.len());
                    let _ = pending.split_to(n);
                }
                Ok(_) => {} // -2: the stream's queue is full, try again
                Err(_) => break End::Abort,
            }
        }
        if output.is_closed() {
            break End::Abort;
        }
        if busy {
            nap = MIN_NAP;
        } else {
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
        }
    };
    // `finish` and `abort` consume a stream; ours is borrowed, so clone the
    // reference (libvirt refcounts streams).
    let result = match end {
        End::Eof => stream.clone().finish(),
        End::Abort => stream.clone().abort(),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "closing a serial console stream");
    }
}
