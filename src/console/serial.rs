//! The rescue serial console: browser WebSocket ⇄ the VM's serial console
//! through libvirt's console stream ([`crate::libvirt::SerialConsole`]).
//!
//! Same admission as the graphical console (module docs of
//! [`crate::console`]): a single-use, short-lived token of its own kind
//! (`POST /api/vms/{id}/serial`), bound to the VM, user, node and boot; the
//! one Origin rule; the owner, the course's teachers and admins only; the
//! session limits and the close codes of [`super::close`], plus
//! [`super::close::CONSOLE_CLOSED`] when the stream ends under a VM that
//! may still run (another session took the console over: libvirt allows one).
//!
//! Wire format: binary WebSocket messages carry raw bytes both ways (what
//! the guest writes; what the user types, UTF-8 encoded by xterm.js). Text
//! messages from the browser are taken as their UTF-8 bytes. Server →
//! browser messages are the stream's chunks as they come (at most 16 KiB).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use super::{ConsoleHub, IssuedToken, PING_INTERVAL, WS_READ_BUFFER, close, close_msg};
use crate::libvirt::SerialConsole;

impl ConsoleHub {
    /// Accepts a redeemed serial console WebSocket and relays it to the
    /// opened console ([`ConsoleHub::relay_serial`]).
    pub fn upgrade_serial(
        self: Arc<Self>,
        ws: WebSocketUpgrade,
        ticket: IssuedToken,
        console: SerialConsole,
    ) -> Response {
        ws.read_buffer_size(WS_READ_BUFFER)
            .on_upgrade(move |socket| self.relay_serial(ticket, socket, console))
            .into_response()
    }

    /// Relays until the browser leaves, the console ends or the hub stops
    /// the session (VM stopped or moved, node down, shutdown).
    pub async fn relay_serial(
        self: Arc<Self>,
        ticket: IssuedToken,
        mut ws: WebSocket,
        console: SerialConsole,
    ) {
        let (sid, mut stop) = match self.open(&ticket, None) {
            Ok(s) => s,
            Err(e) => {
                let _ = ws
                    .send(close_msg(close::TRY_AGAIN_LATER, &e.to_string()))
                    .await;
                return;
            }
        };
        let started = Instant::now();
        let SerialConsole { mut output, input } = console;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let metrics = &self.metrics;

        // console → browser, with pings and stop signals on the same sender.
        let down = async {
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                tokio::select! {
                    chunk = output.recv() => {
                        let Some(chunk) = chunk else {
                            let _ = ws_tx
                                .send(close_msg(close::CONSOLE_CLOSED, "serial console closed"))
                                .await;
                            return;
                        };
                        metrics.bytes_to_client.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if ws_tx.send(Message::Binary(chunk)).await.is_err() {
                            return;
                        }
                    }
                    _ = ping.tick() => {
                        if ws_tx.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                            return;
                        }
                    }
                    changed = stop.changed() => {
                        let reason = if changed.is_ok() { *stop.borrow() } else { None };
                        let (code, text) = reason.unwrap_or((close::SERVER_SHUTDOWN, "server shutting down"));
                        let _ = ws_tx.send(close_msg(code, text)).await;
                        return;
                    }
                }
            }
        };
        // browser → console.
        let up = async {
            while let Some(Ok(msg)) = ws_rx.next().await {
                let data = match msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                metrics
                    .bytes_to_node
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if input.send(data).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = down => {},
            () = up => {},
        }
        // Dropping the channels ends the pump, which aborts the stream.
        drop(output);
        drop(input);
        self.metrics
            .session_seconds_total
            .fetch_add(started.elapsed().as_secs(), Ordering::Relaxed);
        self.close(sid);
    }
}
