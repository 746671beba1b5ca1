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
//! the guest writes; what the user types, UTF-8 encoded by xterm.js). A text
//! message from the browser ends the session ([`super::ws`]). Server →
//! browser messages are the stream's chunks as they come (at most 16 KiB).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::response::Response;

use super::ws::{self, Incoming};
use super::{ConsoleHub, Control, IssuedToken, PING_INTERVAL, close};
use crate::libvirt::SerialConsole;

impl ConsoleHub {
    /// Accepts a redeemed serial console WebSocket and relays it to the
    /// opened console ([`ConsoleHub::relay_serial`]).
    pub fn upgrade_serial(
        self: Arc<Self>,
        ws: ws::Upgrade,
        ticket: IssuedToken,
        console: SerialConsole,
    ) -> Response {
        ws.on_upgrade(move |socket| self.relay_serial(ticket, socket, console))
    }

    /// Relays until the browser leaves, the console ends or the hub stops
    /// the session (VM stopped or moved, node down, shutdown).
    pub async fn relay_serial(
        self: Arc<Self>,
        ticket: IssuedToken,
        mut socket: ws::Socket,
        console: SerialConsole,
    ) {
        let (mut ws_rx, mut ws_tx) = socket.split();
        let (sid, mut stop) = match self.open(&ticket, None) {
            Ok(s) => s,
            Err(e) => {
                let _ = ws_tx.close(close::TRY_AGAIN_LATER, &e.to_string()).await;
                return;
            }
        };
        let started = Instant::now();
        let SerialConsole { mut output, input } = console;
        let metrics = &self.metrics;
        let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Control>(4);

        // console → browser, with pings, pongs, stop signals and the end
        // the browser side asks for on the same writer.
        let down = async {
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                tokio::select! {
                    chunk = output.recv() => {
                        let Some(chunk) = chunk else {
                            let _ = ws_tx
                                .close(close::CONSOLE_CLOSED, "serial console closed")
                                .await;
                            return;
                        };
                        metrics.bytes_to_client.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if ws_tx.binary(&chunk).await.is_err() {
                            return;
                        }
                    }
                    _ = ping.tick() => {
                        if ws_tx.ping().await.is_err() {
                            return;
                        }
                    }
                    ctl = ctl_rx.recv() => match ctl {
                        Some(Control::Pong(p)) => {
                            if ws_tx.pong(&p).await.is_err() {
                                return;
                            }
                        }
                        Some(Control::End { send, .. }) => {
                            if let Some((code, text)) = send {
                                let _ = ws_tx.close(code, text).await;
                            }
                            return;
                        }
                        None => return,
                    },
                    changed = stop.changed() => {
                        let reason = if changed.is_ok() { *stop.borrow() } else { None };
                        let (code, text) = reason.unwrap_or((close::SERVER_SHUTDOWN, "server shutting down"));
                        let _ = ws_tx.close(code, text).await;
                        return;
                    }
                }
            }
        };
        // browser → console; its end goes to `down` (see `ConsoleHub::relay`).
        let up = async {
            let end = loop {
                match ws_rx.next().await {
                    Ok(Incoming::Data(data)) => {
                        metrics
                            .bytes_to_node
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        if input.send(data).await.is_err() {
                            break Control::failed(&ws::WsError::Closed);
                        }
                    }
                    Ok(Incoming::Ping(p)) => {
                        let _ = ctl_tx.try_send(Control::Pong(p));
                    }
                    Ok(Incoming::Close(code)) => break Control::echo(code),
                    Err(e) => break Control::failed(&e),
                }
            };
            let _ = ctl_tx.send(end).await;
            std::future::pending::<()>().await;
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
