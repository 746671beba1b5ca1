//! Console proxy: browser WebSocket ⇄ the VM's VNC/SPICE TCP port on its node.
//!
//! Rooms: [`Console`] (`access.rs`) is the service the handlers call — token
//! issue and admission, the node password lock and renewal, `.vv` passwords,
//! closing sessions of stopped VMs; [`ConsoleHub`] here holds tokens and live
//! sessions and relays bytes; [`rfb`] speaks the RFB handshakes.
//!
//! Tickets: `POST /api/vms/{id}/console` issues a 256-bit random token, kept
//! only as its SHA-256, bound to (VM, user, node, boot), valid for
//! `console_token_ttl` seconds and usable once. Redeeming re-checks that the
//! VM is still running on the same node with the same boot (a stop, reset or
//! migration in between voids it), before any byte goes to the node. Tokens
//! live in the database ([`tokens`]), so the WebSocket may reach another
//! server than the one that issued its token.
//!
//! Two kinds of console ([`ConsoleKind`]): the screen (VNC/SPICE, below) and
//! the rescue serial console ([`serial`]: `POST /api/vms/{id}/serial`,
//! `GET /ws/serial`, libvirt's console stream). A token opens only the kind it
//! was issued for; both follow the same ticket, Origin and session rules.
//!
//! Sessions: each relay registers in [`ConsoleHub`] of the server relaying
//! it; when a VM stops or moves the hub closes its sessions with a close
//! code and a reason the UI shows — at once for what this server did, and
//! within [`access::SESSION_CHECK_EVERY`] for what another server did (the
//! live sessions are compared with the database). Limits on concurrent
//! sessions per user and in total protect each server (they count this
//! server's sessions).
//!
//! Node authentication: every VM's console has a random per-boot password
//! (set in its domain XML at start; VNC's is 8 characters, all VNC auth can
//! use). The browser never sees it. For VNC, the proxy reads the console's
//! current password from libvirt's secure domain XML when a session connects
//! ([`ConsoleTarget`]), performs the RFB handshake with the node itself (VNC
//! authentication, or None if the node offers only that) and offers the
//! browser RFB 3.8 with security type None (see [`rfb`]); then it relays raw
//! bytes. A node that rejects the password ends the session with
//! [`close::AUTH_FAILED`]. SPICE streams are relayed untouched: a SPICE
//! client authenticates with its own ticket.
//!
//! Native viewers (`GET /api/vms/{id}/console.vv`): like Proxmox and oVirt,
//! pvce sets a fresh random password on the *live* console through libvirt
//! (`virDomainUpdateDeviceFlags`) with `passwdValidTo` = now + the ticket
//! lifetime (`--console-ticket-ttl`, default 90 s) and puts it in a
//! virt-viewer file ([`virt_viewer_file`]) with the node's console address
//! and live port. A console has one password, so for VNC the ticket *is* the
//! node password until it expires. The rule that keeps the browser working:
//! the proxy re-reads the live password at every connect, so during the
//! ticket's lifetime it authenticates with the ticket, and once the ticket
//! has expired (or is within 2 s of it, [`password_expired`]) it first sets a
//! fresh per-boot password without expiry, under a lock shared with `.vv`
//! issuing. Expired tickets therefore stay refused by the node; sessions
//! already open are never cut by a password change. A `.vv` issued in the
//! instant between a proxy's read of the password and its VNC answer makes
//! that one connect fail with 4005; the web UI reconnects with a new token.
//! Passwords and tickets are never logged (`Debug` impls redact them).
//!
//! Hot path: pvce speaks the WebSocket framing itself ([`ws`]) and the bulk
//! direction, node → browser, is zero-copy (`splice(2)`) on a plain TCP
//! connection and one large reusable buffer otherwise ([`downlink`]); browser
//! → node payload is unmasked in place and handed on as it arrives. Each
//! direction awaits its writer before reading more, so a slow peer applies
//! backpressure instead of growing a queue. One writer per session: pings,
//! pongs and close frames go out between whole frames ([`Control`]). A ping
//! every [`PING_INTERVAL`] keeps idle consoles alive through proxies that cut
//! quiet connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth;
use crate::libvirt::GraphicsKind;

mod access;
mod downlink;
pub mod rfb;
pub mod serial;
mod tokens;
mod viewonly;
pub mod ws;
pub use access::{
    Admitted, Console, Grant, Issued, SerialAdmitted, SerialIssued, ViewerPassword,
    password_expired,
};
use downlink::{Downlink, Forwarded};
pub use rfb::{RfbError, vnc_auth_response};
use tokens::{TokenRow, Tokens};
pub use viewonly::{UnknownMessage, ViewOnly};
use ws::Incoming;

pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// WebSocket close codes (application range) and their reasons.
pub mod close {
    pub const VM_STOPPED: u16 = 4001;
    pub const VM_MOVED: u16 = 4002;
    pub const NODE_UNREACHABLE: u16 = 4003;
    pub const SERVER_SHUTDOWN: u16 = 4004;
    /// The node's console refused pvce's password or spoke no usable RFB.
    pub const AUTH_FAILED: u16 = 4005;
    /// The serial console ended while the VM may still run: another
    /// session took it over, or the node closed the stream.
    pub const CONSOLE_CLOSED: u16 = 4006;
    /// The browser broke the RFB handshake or the WebSocket protocol
    /// (WebSocket "protocol error").
    pub const PROTOCOL: u16 = 1002;
    /// The browser sent a text frame: consoles take binary only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The browser sent a frame over [`super::ws::MAX_FRAME`].
    pub const TOO_BIG: u16 = 1009;
    /// Too many sessions (WebSocket "try again later").
    pub const TRY_AGAIN_LATER: u16 = 1013;

    use crate::slo::EndedBy;

    /// Who ended a session, for the service levels, from the close code
    /// pvce sent (`None`: the browser closed first).
    pub fn ended_by(code: Option<u16>) -> EndedBy {
        match code {
            Some(NODE_UNREACHABLE | AUTH_FAILED | PROTOCOL | UNSUPPORTED_DATA | TOO_BIG) => {
                EndedBy::Error
            }
            Some(VM_STOPPED | VM_MOVED | SERVER_SHUTDOWN | TRY_AGAIN_LATER | CONSOLE_CLOSED) => {
                EndedBy::System
            }
            _ => EndedBy::User,
        }
    }

    #[cfg(test)]
    #[test]
    fn close_codes_classify_session_ends() {
        assert_eq!(ended_by(Some(4003)), EndedBy::Error);
        assert_eq!(ended_by(Some(4005)), EndedBy::Error);
        assert_eq!(ended_by(Some(1002)), EndedBy::Error);
        assert_eq!(ended_by(Some(1003)), EndedBy::Error);
        assert_eq!(ended_by(Some(1009)), EndedBy::Error);
        assert_eq!(ended_by(Some(4001)), EndedBy::System);
        assert_eq!(ended_by(Some(4002)), EndedBy::System);
        assert_eq!(ended_by(Some(1013)), EndedBy::System);
        assert_eq!(ended_by(None), EndedBy::User);
        assert_eq!(ended_by(Some(1000)), EndedBy::User);
    }
}

/// Bounds the RFB handshakes (node and browser) before relaying starts.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a console session goes and how pvce gets in. `Debug` never shows
/// the password.
#[derive(Clone)]
pub struct ConsoleTarget {
    pub host: String,
    pub port: u16,
    pub protocol: GraphicsKind,
    /// The node console's current password; for VNC the proxy answers the
    /// node's challenge with it. `None`: the console has none.
    pub password: Option<String>,
}

impl std::fmt::Debug for ConsoleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("protocol", &self.protocol)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A virt-viewer connection file (`remote-viewer file.vv`) for a console at
/// `host:port` with a one-time `password`. `title` is the window title;
/// line breaks and other control characters in it are replaced, so nothing
/// a user named can add keys to the file. `delete-this-file=1` makes
/// remote-viewer remove the file (and the password in it) once read.
pub fn virt_viewer_file(
    kind: GraphicsKind,
    host: &str,
    port: u16,
    password: &str,
    title: &str,
) -> String {
    let title: String = title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = |v: &str| -> String { v.chars().filter(|c| !c.is_control()).collect() };
    let mut out = String::from("[virt-viewer]\n");
    out.push_str(&format!("type={kind}\n"));
    out.push_str(&format!("host={}\n", clean(host)));
    out.push_str(&format!("port={port}\n"));
    out.push_str(&format!("password={}\n", clean(password)));
    out.push_str("delete-this-file=1\n");
    out.push_str(&format!("title={title}\n"));
    // Ctrl+Alt+Del etc. go to the guest, and Shift+F12 releases the cursor,
    // as in Proxmox's and oVirt's files.
    out.push_str("release-cursor=shift+f12\n");
    out.push_str("secure-attention=ctrl+alt+end\n");
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console token is invalid, used or expired")]
    BadToken,
    #[error("the VM is not running")]
    NotRunning,
    #[error("too many open consoles ({0})")]
    TooMany(&'static str),
    #[error("the request's Origin is not allowed")]
    BadOrigin,
    /// The token table could not be read or written.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The request is no WebSocket upgrade pvce can accept ([`ws::Upgrade`]).
    #[error("{0}")]
    NotWebSocket(&'static str),
    /// The VM is not the user's to reach, or not running (issuing a token).
    #[error(transparent)]
    Vm(#[from] crate::vms::VmError),
}

/// Which console a token opens: a token for one never opens the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleKind {
    /// The VM's screen (VNC/SPICE), `GET /ws/console`.
    Graphics,
    /// The VM's serial console, `GET /ws/serial` ([`serial`]).
    Serial,
}

/// What a redeemed token grants.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub kind: ConsoleKind,
    pub vm_id: Uuid,
    pub user_id: Uuid,
    pub node_id: Uuid,
    /// `last_started_at` of the VM at issue time: identifies the boot.
    pub boot: String,
    /// The session's service-level record ([`crate::slo`]).
    pub record: Uuid,
    /// Watch only: the relay passes no input to the node ([`viewonly`]).
    pub view_only: bool,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub sessions_total: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub bytes_to_node: AtomicU64,
    pub session_seconds_total: AtomicU64,
    pub refused_total: AtomicU64,
    /// Graphical sessions whose node → browser bytes went zero-copy
    /// ([`downlink`]); the others copied.
    pub zero_copy_sessions: AtomicU64,
}

/// Why a session must end: a WebSocket close code and reason.
type StopSignal = Option<(u16, &'static str)>;

#[derive(Debug)]
struct Session {
    user_id: Uuid,
    vm_id: Uuid,
    node_id: Uuid,
    /// The boot the session's token named (`last_started_at`).
    boot: String,
    /// Graphical sessions: view-only or not; `None` for the serial console.
    view_only: Option<bool>,
    stop: watch::Sender<StopSignal>,
}

/// A session as the cross-server check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub vm_id: Uuid,
    pub node_id: Uuid,
    pub boot: String,
}

/// A live graphical session on a VM: who has it open and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watcher {
    pub user_id: Uuid,
    pub view_only: bool,
}

/// Console tickets and live sessions.
#[derive(Debug)]
pub struct ConsoleHub {
    tokens: Tokens,
    sessions: Mutex<HashMap<u64, Session>>,
    next_id: AtomicU64,
    pub ttl: Duration,
    pub max_per_user: usize,
    pub max_total: usize,
    pub metrics: Metrics,
    /// Where session facts go for the service levels (none in unit tests).
    recorder: Option<crate::slo::ConsoleRecorder>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl ConsoleHub {
    pub fn new(
        pool: crate::db::Pool,
        ttl: Duration,
        max_per_user: usize,
        max_total: usize,
    ) -> Self {
        Self {
            tokens: Tokens::new(pool),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            ttl,
            max_per_user,
            max_total,
            metrics: Metrics::default(),
            recorder: None,
        }
    }

    /// Records every token and session for the service levels.
    #[must_use]
    pub fn with_recorder(mut self, recorder: crate::slo::ConsoleRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn note(&self, fact: crate::slo::ConsoleFact) {
        if let Some(r) = &self.recorder {
            r.note(fact);
        }
    }

    /// Issues a single-use token for the graphical console; only its hash is kept.
    pub async fn issue(
        &self,
        vm_id: Uuid,
        user_id: Uuid,
        node_id: Uuid,
        boot: String,
    ) -> Result<String, ConsoleError> {
        self.issue_for(ConsoleKind::Graphics, vm_id, user_id, node_id, boot)
            .await
    }

    /// Issues a single-use token for a view-only graphical console: its
    /// session passes no input to the node ([`ViewOnly`]).
    pub async fn issue_view_only(
        &self,
        vm_id: Uuid,
        user_id: Uuid,
        node_id: Uuid,
        boot: String,
    ) -> Result<String, ConsoleError> {
        self.issue_token(ConsoleKind::Graphics, true, vm_id, user_id, node_id, boot)
            .await
    }

    /// Issues a single-use token for one kind of console. Serial sessions
    /// are not recorded for the service levels (those measure the desktop).
    pub async fn issue_for(
        &self,
        kind: ConsoleKind,
        vm_id: Uuid,
        user_id: Uuid,
        node_id: Uuid,
        boot: String,
    ) -> Result<String, ConsoleError> {
        self.issue_token(kind, false, vm_id, user_id, node_id, boot)
            .await
    }

    async fn issue_token(
        &self,
        kind: ConsoleKind,
        view_only: bool,
        vm_id: Uuid,
        user_id: Uuid,
        node_id: Uuid,
        boot: String,
    ) -> Result<String, ConsoleError> {
        let token = auth::random_token();
        let record = Uuid::new_v4();
        let now = crate::vms::starts::now_ms();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let row = TokenRow {
            kind,
            view_only,
            vm_id,
            user_id,
            node_id,
            boot,
            record,
            expires_ms: now.saturating_add(ttl_ms),
        };
        self.tokens.insert(&hash(&token), &row, now).await?;
        if kind == ConsoleKind::Graphics {
            self.note(crate::slo::ConsoleFact::Issued {
                id: record,
                vm_id,
                user_id,
                node_id,
            });
        }
        Ok(token)
    }

    /// Takes a graphical console token out (single use). Expired or unknown → BadToken.
    pub async fn redeem(&self, token: &str) -> Result<IssuedToken, ConsoleError> {
        self.redeem_for(ConsoleKind::Graphics, token).await
    }

    /// Takes a token of `kind` out (single use), on whichever server it was
    /// issued. Expired, unknown or of the other kind → BadToken (a token of
    /// the other kind is used up too).
    pub async fn redeem_for(
        &self,
        kind: ConsoleKind,
        token: &str,
    ) -> Result<IssuedToken, ConsoleError> {
        let row = if token.is_empty() || token.len() > 128 {
            None
        } else {
            self.tokens.take(&hash(token)).await?
        };
        match row {
            Some(t) if t.expires_ms > crate::vms::starts::now_ms() && t.kind == kind => {
                Ok(IssuedToken {
                    kind: t.kind,
                    vm_id: t.vm_id,
                    user_id: t.user_id,
                    node_id: t.node_id,
                    boot: t.boot,
                    record: t.record,
                    view_only: t.view_only,
                })
            }
            _ => {
                self.metrics.refused_total.fetch_add(1, Ordering::Relaxed);
                Err(ConsoleError::BadToken)
            }
        }
    }

    /// Registers a session if the limits allow it.
    fn open(
        &self,
        ticket: &IssuedToken,
        view_only: Option<bool>,
    ) -> Result<(u64, watch::Receiver<StopSignal>), ConsoleError> {
        let user_id = ticket.user_id;
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_total {
            return Err(ConsoleError::TooMany("server"));
        }
        if map.values().filter(|s| s.user_id == user_id).count() >= self.max_per_user {
            return Err(ConsoleError::TooMany("user"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(
            id,
            Session {
                user_id,
                vm_id: ticket.vm_id,
                node_id: ticket.node_id,
                boot: ticket.boot.clone(),
                view_only,
                stop: tx,
            },
        );
        self.metrics.sessions_total.fetch_add(1, Ordering::Relaxed);
        Ok((id, rx))
    }

    fn close(&self, id: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Ends every session (and token) of a VM with the given close code.
    pub async fn end_vm(&self, vm_id: Uuid, code: u16, reason: &'static str) {
        // Redeeming re-checks the VM's boot and node anyway; voiding is so
        // that a stopped VM leaves no live tokens, and may fail harmlessly.
        if let Err(e) = self.tokens.void_vm(vm_id).await {
            tracing::warn!(vm = %vm_id, error = %e, "console tokens not voided");
        }
        self.signal_vm(vm_id, code, reason);
    }

    /// Tells every session of a VM on this server to end.
    fn signal_vm(&self, vm_id: Uuid, code: u16, reason: &'static str) {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for s in map.values().filter(|s| s.vm_id == vm_id) {
            let _ = s.stop.send(Some((code, reason)));
        }
    }

    /// Ends every session relayed from a node that stopped answering, with
    /// [`close::NODE_UNREACHABLE`] (its TCP streams may hang for minutes
    /// before the kernel gives up on them).
    pub fn end_node(&self, node_id: Uuid) {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for s in map.values().filter(|s| s.node_id == node_id) {
            let _ = s
                .stop
                .send(Some((close::NODE_UNREACHABLE, "node unreachable")));
        }
    }

    /// Every live session on this server: (VM, node, boot), for the check
    /// against the database that ends sessions whose VM stopped or moved
    /// through another server ([`Console::close_ended_sessions`]).
    pub fn live(&self) -> Vec<LiveSession> {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<LiveSession> = map
            .values()
            .map(|s| LiveSession {
                vm_id: s.vm_id,
                node_id: s.node_id,
                boot: s.boot.clone(),
            })
            .collect();
        out.sort_by(|a, b| (a.vm_id, a.node_id, &a.boot).cmp(&(b.vm_id, b.node_id, &b.boot)));
        out.dedup();
        out
    }

    /// Ends the sessions of `vm_id` that were opened on `boot`, with a code.
    pub fn end_boot(&self, vm_id: Uuid, boot: &str, code: u16, reason: &'static str) {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for s in map.values().filter(|s| s.vm_id == vm_id && s.boot == boot) {
            let _ = s.stop.send(Some((code, reason)));
        }
    }

    /// The live graphical sessions on a VM (serial sessions are not here).
    pub fn watchers(&self, vm_id: Uuid) -> Vec<Watcher> {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|s| s.vm_id == vm_id)
            .filter_map(|s| {
                Some(Watcher {
                    user_id: s.user_id,
                    view_only: s.view_only?,
                })
            })
            .collect()
    }

    pub fn active_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Accepts a redeemed console WebSocket the way consoles need it — the
    /// `binary` subprotocol noVNC/websockify clients ask for — and relays it
    /// to `target` ([`ConsoleHub::relay`]). For `GET /ws/console` once the
    /// token, Origin and VM checks have passed.
    pub fn upgrade(
        self: Arc<Self>,
        ws: ws::Upgrade,
        ticket: IssuedToken,
        target: ConsoleTarget,
    ) -> Response {
        ws.protocol("binary")
            .on_upgrade(move |socket| self.relay(ticket, socket, target))
    }

    /// Relays a WebSocket to a TCP console until either side closes or the VM
    /// stops; for VNC after authenticating to the node and greeting the
    /// browser (module docs).
    pub async fn relay(
        self: Arc<Self>,
        ticket: IssuedToken,
        mut socket: ws::Socket,
        target: ConsoleTarget,
    ) {
        use crate::slo::ConsoleFact;
        let record = ticket.record;
        self.note(ConsoleFact::Opened { id: record });
        let ended = |code: Option<u16>| ConsoleFact::Ended {
            id: record,
            code,
            by: close::ended_by(code),
        };
        let (mut ws_rx, mut ws_tx) = socket.split();
        let opened = self.open(&ticket, Some(ticket.view_only));
        let (sid, mut stop) = match opened {
            Ok(s) => s,
            Err(e) => {
                let _ = ws_tx.close(close::TRY_AGAIN_LATER, &e.to_string()).await;
                self.note(ended(Some(close::TRY_AGAIN_LATER)));
                return;
            }
        };
        let started = Instant::now();
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await;
        let mut tcp = match tcp {
            Ok(Ok(t)) => t,
            _ => {
                let _ = ws_tx
                    .close(close::NODE_UNREACHABLE, "console unreachable")
                    .await;
                self.note(ended(Some(close::NODE_UNREACHABLE)));
                self.close(sid);
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut early = bytes::Bytes::new();
        // A view-only session: the browser's bytes pass through the filter.
        let mut filter = ticket.view_only.then(ViewOnly::new);
        let mut filtered = Vec::new();
        if target.protocol == GraphicsKind::Vnc {
            let handshakes = async {
                rfb::authenticate_node(&mut tcp, target.password.as_deref()).await?;
                rfb::greet_browser(&mut ws_rx, &mut ws_tx).await
            };
            let failure = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshakes).await {
                Ok(Ok(pipelined)) => {
                    early = pipelined;
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(_) => Some(RfbError::Io(std::io::ErrorKind::TimedOut.into())),
            };
            if let Some(e) = failure {
                tracing::warn!(vm = %ticket.vm_id, error = %e, "console handshake failed");
                let (code, reason) = match e {
                    RfbError::AuthFailed(_)
                    | RfbError::NoUsableSecurity(_)
                    | RfbError::Refused(_) => (close::AUTH_FAILED, "console authentication failed"),
                    RfbError::Browser(_) => (close::PROTOCOL, "RFB handshake failed"),
                    RfbError::Io(_) | RfbError::NotRfb => {
                        (close::NODE_UNREACHABLE, "console unreachable")
                    }
                };
                let _ = ws_tx.close(code, reason).await;
                self.note(ended(Some(code)));
                self.close(sid);
                return;
            }
        }
        if let Some(f) = filter.as_mut() {
            filtered.clear();
            if f.feed(&early, &mut filtered).is_err() {
                let _ = ws_tx.close(close::PROTOCOL, "unknown RFB message").await;
                self.note(ended(Some(close::PROTOCOL)));
                self.close(sid);
                return;
            }
            early = bytes::Bytes::from(std::mem::take(&mut filtered));
        }
        if !early.is_empty() && tcp.write_all(&early).await.is_err() {
            let _ = ws_tx
                .close(close::NODE_UNREACHABLE, "console unreachable")
                .await;
            self.note(ended(Some(close::NODE_UNREACHABLE)));
            self.close(sid);
            return;
        }
        self.note(ConsoleFact::Established { id: record });
        let (tcp_rd, mut tcp_wr) = tcp.split();
        let node: &TcpStream = tcp_rd.as_ref();
        let metrics = &self.metrics;
        let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Control>(4);

        // node → browser, with pings, pongs, stop signals and the end the
        // browser side asks for on the same writer, each between two whole
        // frames; ends with the close code it sent (`None`: the browser was
        // gone or closed first).
        let down = async {
            let mut downlink = Downlink::new(&ws_tx);
            if downlink.is_zero_copy() {
                metrics.zero_copy_sessions.fetch_add(1, Ordering::Relaxed);
            }
            let mut first_frame = true;
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                tokio::select! {
                    () = downlink.ready(node) => {
                        match downlink.forward(node, &mut ws_tx).await {
                            Ok(Forwarded::Frame(n)) => {
                                metrics.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
                                if first_frame {
                                    first_frame = false;
                                    self.note(ConsoleFact::FirstFrame { id: record, vm_id: ticket.vm_id });
                                }
                            }
                            Ok(Forwarded::Nothing) => {}
                            Ok(Forwarded::End) => {
                                let _ = ws_tx.close(close::VM_STOPPED, "VM stopped").await;
                                return Some(close::VM_STOPPED);
                            }
                            Err(_) => return None,
                        }
                    }
                    _ = ping.tick() => {
                        if ws_tx.ping().await.is_err() {
                            return None;
                        }
                    }
                    ctl = ctl_rx.recv() => match ctl {
                        Some(Control::Pong(p)) => {
                            if ws_tx.pong(&p).await.is_err() {
                                return None;
                            }
                        }
                        Some(Control::End { send, record }) => {
                            if let Some((code, text)) = send {
                                let _ = ws_tx.close(code, text).await;
                            }
                            return record;
                        }
                        None => return None,
                    },
                    changed = stop.changed() => {
                        let reason = if changed.is_ok() { *stop.borrow() } else { None };
                        let (code, text) = reason.unwrap_or((close::SERVER_SHUTDOWN, "server shutting down"));
                        let _ = ws_tx.close(code, text).await;
                        return Some(code);
                    }
                }
            }
        };
        // browser → node; a view-only session's input is dropped on the way
        // (ends with a protocol error for a message the filter cannot parse).
        // Its end goes to `down` as a [`Control::End`], so a close frame is
        // never written into the middle of a frame.
        let up = async {
            let end = loop {
                let data = match ws_rx.next().await {
                    Ok(Incoming::Data(b)) => b,
                    Ok(Incoming::Ping(p)) => {
                        // Only the latest ping needs an answer (RFC 6455 §5.5.3).
                        let _ = ctl_tx.try_send(Control::Pong(p));
                        continue;
                    }
                    Ok(Incoming::Close(code)) => break Control::echo(code),
                    Err(e) => break Control::failed(&e),
                };
                let data = match filter.as_mut() {
                    None => data,
                    Some(f) => {
                        filtered.clear();
                        if f.feed(&data, &mut filtered).is_err() {
                            break Control::error(close::PROTOCOL, "unknown RFB message");
                        }
                        if filtered.is_empty() {
                            continue;
                        }
                        bytes::Bytes::copy_from_slice(&filtered)
                    }
                };
                metrics
                    .bytes_to_node
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if tcp_wr.write_all(&data).await.is_err() {
                    break Control::failed(&ws::WsError::Closed);
                }
            };
            let _ = tcp_wr.shutdown().await;
            let _ = ctl_tx.send(end).await;
            // `down` ends the session once it has taken the end.
            std::future::pending::<()>().await;
        };
        let code = tokio::select! {
            code = down => code,
            () = up => None,
        };
        self.note(ended(code));
        self.metrics
            .session_seconds_total
            .fetch_add(started.elapsed().as_secs(), Ordering::Relaxed);
        self.close(sid);
    }
}

/// From a relay's browser side to its writer (which owns the socket's
/// write direction): a pong to send, or the end of the session.
#[derive(Debug)]
pub(crate) enum Control {
    Pong(bytes::Bytes),
    End {
        /// The close frame to send, if any.
        send: Option<(u16, &'static str)>,
        /// The close code to record for the service levels (`None`: the
        /// browser ended the session).
        record: Option<u16>,
    },
}

impl Control {
    /// The browser closed: echo its code (RFC 6455 §5.5.1).
    pub(crate) fn echo(code: Option<u16>) -> Self {
        let code = code.filter(|c| (1000..5000).contains(c) && !matches!(c, 1005 | 1006 | 1015));
        Control::End {
            send: Some((code.unwrap_or(1000), "")),
            record: None,
        }
    }

    /// pvce ends the session with `code`.
    pub(crate) fn error(code: u16, reason: &'static str) -> Self {
        Control::End {
            send: Some((code, reason)),
            record: Some(code),
        }
    }

    /// The browser broke the protocol (its close code), or is gone.
    pub(crate) fn failed(e: &ws::WsError) -> Self {
        match e.close() {
            Some((code, reason)) => Self::error(code, reason),
            None => Control::End {
                send: None,
                record: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A hub on a fresh, migrated SQLite database (the directory keeps it).
    async fn hub(ttl: Duration, per_user: usize, total: usize) -> (tempfile::TempDir, ConsoleHub) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("database");
        (dir, ConsoleHub::new(pool, ttl, per_user, total))
    }

    /// A token for some VM, user and node.
    async fn any_token(hub: &ConsoleHub) -> String {
        hub.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            String::new(),
        )
        .await
        .expect("token")
    }

    fn ticket(user: Uuid, vm: Uuid, node: Uuid) -> IssuedToken {
        IssuedToken {
            kind: ConsoleKind::Graphics,
            vm_id: vm,
            user_id: user,
            node_id: node,
            boot: "boot".into(),
            record: Uuid::new_v4(),
            view_only: false,
        }
    }

    #[tokio::test]
    async fn tokens_are_single_use_and_expire() {
        let (_dir, hub) = hub(Duration::from_secs(60), 2, 10).await;
        let vm = Uuid::new_v4();
        let t = hub
            .issue(vm, Uuid::new_v4(), Uuid::new_v4(), "boot".into())
            .await
            .unwrap();
        assert!(hub.redeem(&t).await.is_ok());
        assert!(matches!(hub.redeem(&t).await, Err(ConsoleError::BadToken)));
        let t2 = hub
            .issue(vm, Uuid::new_v4(), Uuid::new_v4(), "boot".into())
            .await
            .unwrap();
        hub.end_vm(vm, close::VM_STOPPED, "VM stopped").await;
        assert!(
            hub.redeem(&t2).await.is_err(),
            "a stopped VM's tokens are void"
        );
        // A zero TTL: expired the millisecond it was issued.
        let expired = ConsoleHub::new(hub.tokens.pool().clone(), Duration::ZERO, 2, 10);
        let t3 = expired
            .issue(vm, Uuid::new_v4(), Uuid::new_v4(), "boot".into())
            .await
            .unwrap();
        assert!(matches!(
            expired.redeem(&t3).await,
            Err(ConsoleError::BadToken)
        ));
        assert!(matches!(hub.redeem("").await, Err(ConsoleError::BadToken)));
        assert!(matches!(
            hub.redeem(&"x".repeat(200)).await,
            Err(ConsoleError::BadToken)
        ));
    }

    /// Two servers on one database: a token issued by one is redeemed by
    /// the other, and when both race for it exactly one wins.
    #[tokio::test]
    async fn a_token_opens_one_session_across_servers() {
        let (_dir, a) = hub(Duration::from_secs(60), 2, 10).await;
        let b = ConsoleHub::new(a.tokens.pool().clone(), Duration::from_secs(60), 2, 10);
        let (vm, user, node) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t = a.issue(vm, user, node, "boot-1".into()).await.unwrap();
        let got = b.redeem(&t).await.expect("issued on a, redeemed on b");
        assert_eq!((got.vm_id, got.user_id, got.node_id), (vm, user, node));
        assert_eq!(got.boot, "boot-1");
        assert!(a.redeem(&t).await.is_err());
        for _ in 0..20 {
            let t = a.issue(vm, user, node, "boot".into()).await.unwrap();
            let (ra, rb) = tokio::join!(a.redeem(&t), b.redeem(&t));
            assert_eq!(
                u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
                1,
                "{ra:?} {rb:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_opens_only_its_kind_of_console() {
        let (_dir, hub) = hub(Duration::from_secs(60), 2, 10).await;
        let (vm, user, node) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let serial = hub
            .issue_for(ConsoleKind::Serial, vm, user, node, "boot".into())
            .await
            .unwrap();
        assert!(matches!(
            hub.redeem(&serial).await,
            Err(ConsoleError::BadToken)
        ));
        // Used up by the wrong attempt: single use holds across kinds.
        assert!(hub.redeem_for(ConsoleKind::Serial, &serial).await.is_err());
        let serial = hub
            .issue_for(ConsoleKind::Serial, vm, user, node, "boot".into())
            .await
            .unwrap();
        let t = hub
            .redeem_for(ConsoleKind::Serial, &serial)
            .await
            .expect("a serial token opens the serial console");
        assert_eq!(
            (t.kind, t.vm_id, t.user_id),
            (ConsoleKind::Serial, vm, user)
        );
        let screen = hub.issue(vm, user, node, "boot".into()).await.unwrap();
        assert!(hub.redeem_for(ConsoleKind::Serial, &screen).await.is_err());
        let view = hub
            .issue_view_only(vm, user, node, "boot".into())
            .await
            .unwrap();
        assert!(hub.redeem(&view).await.unwrap().view_only);
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed() {
        let (_dir, hub) = hub(Duration::from_secs(60), 2, 10).await;
        let t = any_token(&hub).await;
        let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM console_tokens")
            .fetch_all(hub.tokens.pool())
            .await
            .unwrap();
        assert_eq!(stored, [hash(&t)]);
    }

    #[tokio::test]
    async fn session_limits() {
        let (_dir, hub) = hub(Duration::from_secs(60), 1, 2).await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let n = Uuid::new_v4();
        let (s1, _r1) = hub
            .open(&ticket(a, Uuid::new_v4(), n), Some(false))
            .expect("first");
        assert!(matches!(
            hub.open(&ticket(a, Uuid::new_v4(), n), Some(false)),
            Err(ConsoleError::TooMany("user"))
        ));
        let _s2 = hub
            .open(&ticket(b, Uuid::new_v4(), n), Some(false))
            .expect("second user");
        assert!(matches!(
            hub.open(&ticket(Uuid::new_v4(), Uuid::new_v4(), n), Some(false)),
            Err(ConsoleError::TooMany("server"))
        ));
        hub.close(s1);
        assert!(hub.open(&ticket(a, Uuid::new_v4(), n), Some(false)).is_ok());
    }

    #[tokio::test]
    async fn a_node_going_down_ends_its_sessions_as_unreachable() {
        let (_dir, hub) = hub(Duration::from_secs(60), 4, 10).await;
        let (down, up) = (Uuid::new_v4(), Uuid::new_v4());
        let (_s1, r1) = hub
            .open(&ticket(Uuid::new_v4(), Uuid::new_v4(), down), Some(false))
            .expect("open");
        let (_s2, r2) = hub
            .open(&ticket(Uuid::new_v4(), Uuid::new_v4(), up), Some(false))
            .expect("open");
        hub.end_node(down);
        assert_eq!(
            *r1.borrow(),
            Some((close::NODE_UNREACHABLE, "node unreachable"))
        );
        assert_eq!(*r2.borrow(), None, "another node's session goes on");
    }

    #[tokio::test]
    async fn live_sessions_are_listed_once_per_boot_and_ended_by_boot() {
        let (_dir, hub) = hub(Duration::from_secs(60), 4, 10).await;
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let old = ticket(Uuid::new_v4(), vm, node);
        let mut new = ticket(Uuid::new_v4(), vm, node);
        new.boot = "boot-2".into();
        let (_s1, r1) = hub.open(&old, Some(false)).unwrap();
        let (_s2, _r1b) = hub.open(&old, Some(true)).unwrap();
        let (_s3, r3) = hub.open(&new, Some(false)).unwrap();
        assert_eq!(hub.live().len(), 2);
        hub.end_boot(vm, "boot", close::VM_STOPPED, "VM stopped");
        assert_eq!(*r1.borrow(), Some((close::VM_STOPPED, "VM stopped")));
        assert_eq!(*r3.borrow(), None);
    }

    /// A VNC server that demands VNC authentication with `password`, then
    /// expects ClientInit and answers with a fake 4-byte "ServerInit",
    /// then `bulk` bytes of [`pattern`], then echoes what it reads.
    async fn vnc_server(password: &'static str, bulk: usize) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    s.write_all(b"RFB 003.008\n").await?;
                    let mut v = [0u8; 12];
                    s.read_exact(&mut v).await?;
                    s.write_all(&[1, 2]).await?;
                    s.read_u8().await?;
                    let challenge = [7u8; 16];
                    s.write_all(&challenge).await?;
                    let mut r = [0u8; 16];
                    s.read_exact(&mut r).await?;
                    if r != vnc_auth_response(&challenge, password) {
                        s.write_all(&[0, 0, 0, 1, 0, 0, 0, 4]).await?;
                        s.write_all(b"nope").await?;
                        return Ok::<_, std::io::Error>(());
                    }
                    s.write_all(&[0, 0, 0, 0]).await?;
                    assert_eq!(s.read_u8().await?, 1, "ClientInit");
                    s.write_all(b"INIT").await?;
                    s.write_all(&pattern(bulk)).await?;
                    let (mut rd, mut wr) = s.split();
                    tokio::io::copy(&mut rd, &mut wr).await?;
                    Ok(())
                });
            }
        });
        addr
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// The relay behind a real WebSocket, authenticating to `node` with
    /// `password`; served by pvce's serve loop (`zero_copy`: the relay gets
    /// the plain TCP socket) or by axum's (the copying path).
    async fn relay_server(
        node: std::net::SocketAddr,
        password: &'static str,
        zero_copy: bool,
    ) -> (String, Arc<ConsoleHub>) {
        use axum::routing::get;
        let (dir, hub) = hub(Duration::from_secs(60), 4, 10).await;
        let (dir, hub) = (Arc::new(dir), Arc::new(hub));
        let target = ConsoleTarget {
            host: node.ip().to_string(),
            port: node.port(),
            protocol: GraphicsKind::Vnc,
            password: Some(password.into()),
        };
        let h = hub.clone();
        let app = axum::Router::new().route(
            "/ws",
            get(move |ws: ws::Upgrade| {
                let hub = h.clone();
                let target = target.clone();
                // The database lives as long as the server's handler.
                let _db = dir.clone();
                async move {
                    let t = any_token(&hub).await;
                    let ticket = hub.redeem(&t).await.expect("ticket");
                    hub.upgrade(ws, ticket, target)
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/ws", l.local_addr().expect("addr"));
        if zero_copy {
            tokio::spawn(crate::http::serve::serve(l, app));
        } else {
            tokio::spawn(async move { axum::serve(l, app).await });
        }
        (url, hub)
    }

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// The next `n` bytes of binary messages (`got` keeps the rest).
    async fn next_bytes(ws: &mut Client, got: &mut Vec<u8>, n: usize) -> Vec<u8> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message as M;
        while got.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("timed out");
            match msg.expect("open").expect("message") {
                M::Binary(b) => got.extend_from_slice(&b),
                M::Ping(_) | M::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got.drain(..n).collect()
    }

    /// Connects and runs the browser's side of the RFB handshake up to the
    /// node's "ServerInit".
    async fn greeted(url: &str) -> (Client, Vec<u8>) {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message as M;
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut got = Vec::new();
        assert_eq!(next_bytes(&mut ws, &mut got, 12).await, b"RFB 003.008\n");
        // Version, the choice of None and ClientInit pipelined in one message:
        // the ClientInit byte must still reach the node.
        ws.send(M::Binary(b"RFB 003.008\n\x01\x01".to_vec().into()))
            .await
            .expect("send");
        assert_eq!(
            next_bytes(&mut ws, &mut got, 2).await,
            [1, 1],
            "only None offered"
        );
        assert_eq!(
            next_bytes(&mut ws, &mut got, 4).await,
            [0, 0, 0, 0],
            "SecurityResult"
        );
        assert_eq!(next_bytes(&mut ws, &mut got, 4).await, b"INIT");
        (ws, got)
    }

    /// The close frame the server sends next.
    async fn closed(ws: &mut Client) -> (u16, String) {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message as M;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("timed out");
            match msg.expect("a message").expect("ok") {
                M::Close(Some(f)) => return (u16::from(f.code), f.reason.to_string()),
                M::Binary(_) | M::Ping(_) | M::Pong(_) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn relay_authenticates_to_the_node_and_reports_a_wrong_password() {
        let node = vnc_server("right", 0).await;
        for zero_copy in [true, false] {
            // Right password: the browser sees RFB 3.8 with None, then the node's bytes.
            let (url, _) = relay_server(node, "right", zero_copy).await;
            greeted(&url).await;

            // Wrong password: closed with 4005 and a reason, before any RFB byte.
            let (url, _) = relay_server(node, "wrong", zero_copy).await;
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            assert_eq!(
                closed(&mut ws).await,
                (close::AUTH_FAILED, "console authentication failed".into())
            );
        }
    }

    /// Bulk node → browser bytes arrive intact on both paths (zero-copy
    /// frames up to the pipe's size, copied ones up to the buffer's), and
    /// masked browser → node bytes arrive unmasked, pings answered between.
    #[tokio::test]
    async fn both_downlink_paths_relay_every_byte_both_ways() {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message as M;
        const BULK: usize = 5 * 1024 * 1024 + 13;
        let node = vnc_server("pw", BULK).await;
        for zero_copy in [true, false] {
            let (url, hub) = relay_server(node, "pw", zero_copy).await;
            let (mut ws, mut got) = greeted(&url).await;
            assert!(
                next_bytes(&mut ws, &mut got, BULK).await == pattern(BULK),
                "bulk bytes differ (zero copy: {zero_copy})"
            );
            assert_eq!(
                hub.metrics.zero_copy_sessions.load(Ordering::Relaxed),
                u64::from(zero_copy),
                "the path taken"
            );
            let up = pattern(70_000);
            ws.send(M::Binary(up[..5].to_vec().into()))
                .await
                .expect("send");
            ws.send(M::Ping(bytes::Bytes::from_static(b"hi")))
                .await
                .expect("ping");
            ws.send(M::Binary(up[5..].to_vec().into()))
                .await
                .expect("send");
            assert!(
                next_bytes(&mut ws, &mut got, up.len()).await == up,
                "echo differs"
            );
            // A text frame is refused with 1003 and ends the session.
            ws.send(M::Text("hello".into())).await.expect("send");
            assert_eq!(
                closed(&mut ws).await,
                (
                    close::UNSUPPORTED_DATA,
                    "text frames are not accepted".into()
                )
            );
        }
    }

    /// A stop signal ends the session with its code, after the frame in
    /// flight; the browser closing ends it with an echoed close.
    #[tokio::test]
    async fn stops_and_browser_closes_end_sessions_cleanly() {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as M;
        let node = vnc_server("pw", 0).await;
        let (url, hub) = relay_server(node, "pw", true).await;
        let (mut ws, _) = greeted(&url).await;
        let vm = hub
            .sessions
            .lock()
            .expect("lock")
            .values()
            .next()
            .map(|s| s.vm_id);
        hub.end_vm(vm.expect("a session"), close::VM_STOPPED, "VM stopped")
            .await;
        assert_eq!(
            closed(&mut ws).await,
            (close::VM_STOPPED, "VM stopped".into())
        );

        let (mut ws, _) = greeted(&url).await;
        ws.send(M::Close(None)).await.expect("close");
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out");
        assert!(matches!(echo, Some(Ok(M::Close(_)))), "{echo:?}");
        // The session is gone from the hub once the relay ended.
        for _ in 0..1000 {
            if hub.active_sessions() == 0 {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the session stayed open");
    }

    #[test]
    fn viewer_file() {
        let f = virt_viewer_file(
            GraphicsKind::Spice,
            "10.0.0.5",
            5901,
            "Abc123",
            "alice / OS\n[virt-viewer]\rhost=evil",
        );
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(lines[0], "[virt-viewer]");
        assert!(lines.contains(&"type=spice"));
        assert!(lines.contains(&"host=10.0.0.5"));
        assert!(lines.contains(&"port=5901"));
        assert!(lines.contains(&"password=Abc123"));
        assert!(lines.contains(&"delete-this-file=1"));
        assert!(lines.contains(&"title=alice / OS [virt-viewer] host=evil"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("host=")).count(), 1);
        assert_eq!(lines.iter().filter(|l| l.starts_with('[')).count(), 1);
    }
}
