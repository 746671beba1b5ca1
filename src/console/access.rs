//! Console access: the service the HTTP handlers call. It issues console
//! tokens to users who may reach a running VM, admits the WebSocket that
//! redeems one, keeps the node console's password usable, hands out native
//! viewer (`.vv`) passwords, and ends sessions whose VM stopped.
//!
//! Invariants (the rules are in the module docs of [`crate::console`]):
//! - A token opens a session only for the user it was issued to (when the
//!   browser sends its session, the two must agree), and only while the VM
//!   runs on the node and in the boot it was issued for.
//! - The node password is renewed and `.vv` passwords are set under one lock
//!   ([`Console::passwords`]), so a renewal never overwrites a viewer
//!   password that was just handed out, nor the other way round.
//! - Passwords never reach a log: [`ViewerPassword`] and [`ConsoleTarget`]
//!   redact them in `Debug`.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{
    ConsoleError, ConsoleHub, ConsoleKind, ConsoleTarget, IssuedToken, LiveSession, Metrics, close,
};
use crate::db::Pool;
use crate::libvirt::{self, GraphicsKind};
use crate::nodes::Nodes;
use crate::users::User;
use crate::vms::{Vm, VmError, VmManager, VmState, labels};

/// True if a console password's expiry (`.vv` ticket) has passed or is
/// about to (within 2 s, the time a connect needs), so the proxy renews it.
pub fn password_expired(auth: &libvirt::ConsoleAuth) -> bool {
    auth.valid_to
        .is_some_and(|t| t <= time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
}

/// A token just issued: what the browser needs to open the console.
#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub protocol: GraphicsKind,
    pub expires_in: Duration,
}

/// What a request to open a console gets.
#[derive(Debug)]
pub enum Grant {
    /// A token for a session through the proxy.
    Token(Issued),
    /// Watching a console the proxy cannot filter (SPICE streams are
    /// relayed untouched, so input could not be kept from the guest): no
    /// session at all, the viewer shows the VM's live picture instead
    /// (`GET /api/vms/{id}/screen`, [`crate::wall`]), whose first fetch
    /// records the watch ([`Console::record_picture_watch`]).
    Picture { vm_id: Uuid, protocol: GraphicsKind },
}

/// A redeemed token that may open a session, and where the session goes.
#[derive(Debug)]
pub struct Admitted {
    pub(super) ticket: IssuedToken,
    pub(super) target: ConsoleTarget,
}

/// A serial console token just issued.
#[derive(Debug)]
pub struct SerialIssued {
    pub token: String,
    pub expires_in: Duration,
}

/// A redeemed serial console token and the console it opened.
#[derive(Debug)]
pub struct SerialAdmitted {
    ticket: IssuedToken,
    console: libvirt::SerialConsole,
}

/// What a native viewer needs to reach a running VM's console (`.vv`).
/// `Debug` leaves the password out.
pub struct ViewerPassword {
    pub vm: Vm,
    pub kind: GraphicsKind,
    pub host: String,
    pub port: u16,
    pub password: String,
    pub valid_to: time::OffsetDateTime,
    /// Window title: owner / course / VM.
    pub title: String,
}

impl std::fmt::Debug for ViewerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerPassword")
            .field("vm", &self.vm.id)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("valid_to", &self.valid_to)
            .finish_non_exhaustive()
    }
}

impl ViewerPassword {
    /// The virt-viewer file for it ([`super::virt_viewer_file`]).
    pub fn file(&self) -> String {
        super::virt_viewer_file(
            self.kind,
            &self.host,
            self.port,
            &self.password,
            &self.title,
        )
    }
}

/// Console access over the hub of live sessions.
#[derive(Debug)]
pub struct Console {
    hub: Arc<ConsoleHub>,
    pool: Pool,
    vms: Arc<VmManager>,
    nodes: Arc<Nodes>,
    /// Held while a console password is renewed or a viewer password set.
    passwords: tokio::sync::Mutex<()>,
    viewer_ttl: Duration,
}

fn no_console() -> VmError {
    VmError::NotRunning("the VM has no console yet".into())
}

impl Console {
    /// `viewer_ttl`: how long a `.vv` password works.
    pub fn new(
        hub: ConsoleHub,
        pool: Pool,
        vms: Arc<VmManager>,
        nodes: Arc<Nodes>,
        viewer_ttl: Duration,
    ) -> Self {
        Self {
            hub: Arc::new(hub),
            pool,
            nodes,
            vms,
            passwords: tokio::sync::Mutex::new(()),
            viewer_ttl,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    pub fn active_sessions(&self) -> usize {
        self.hub.active_sessions()
    }

    /// The live graphical sessions on a VM: who and whether view-only.
    pub fn watchers(&self, vm_id: Uuid) -> Vec<super::Watcher> {
        self.hub.watchers(vm_id)
    }

    /// Where a running VM's console listens: (vm, host, port, protocol).
    pub async fn endpoint(&self, id: Uuid) -> Result<(Vm, String, u16, GraphicsKind), VmError> {
        let (vm, node, conn) = self.vms.running_on_node(id).await?;
        let graphics = conn
            .domain(&self.vms.domain_name(vm.id))
            .await?
            .and_then(|d| d.graphics)
            .ok_or_else(no_console)?;
        Ok((vm, node.console_address, graphics.port, graphics.kind))
    }

    /// A single-use token for the console of a running VM the user may
    /// reach. `view_only`: the session passes no input to the guest; staff
    /// may watch any course's VM that way (the wall), but take control only
    /// of the VMs of their tickets.
    pub async fn issue(
        &self,
        user: &User,
        vm_id: Uuid,
        view_only: bool,
    ) -> Result<Grant, ConsoleError> {
        match self.vms.get_for(user, vm_id).await {
            Ok(_) => {}
            Err(VmError::NotFound) if view_only && user.role == crate::auth::Role::Staff => {
                let vm = crate::vms::load(&self.pool, vm_id).await?;
                if vm.course_id.is_none() {
                    return Err(VmError::NotFound.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.issue_checked(user, vm_id, view_only).await
    }

    /// [`Console::issue`] for a caller that has decided the user may open
    /// the console this way (a class watching their teacher's screen).
    /// View-only of a SPICE console is the live picture ([`Grant::Picture`]).
    pub async fn issue_checked(
        &self,
        user: &User,
        vm_id: Uuid,
        view_only: bool,
    ) -> Result<Grant, ConsoleError> {
        let (vm, _, _, protocol) = self.endpoint(vm_id).await?;
        let node_id = vm.node_id.ok_or(ConsoleError::NotRunning)?;
        if view_only && protocol != GraphicsKind::Vnc {
            return Ok(Grant::Picture {
                vm_id: vm.id,
                protocol,
            });
        }
        let boot = vm.last_started_at.clone().unwrap_or_default();
        let token = if view_only {
            self.hub
                .issue_view_only(vm.id, user.id, node_id, boot)
                .await?
        } else {
            self.hub.issue(vm.id, user.id, node_id, boot).await?
        };
        let mode = if view_only { "view" } else { "control" };
        self.record_open(user, &vm, "browser", mode).await;
        Ok(Grant::Token(Issued {
            token,
            protocol,
            expires_in: self.hub.ttl,
        }))
    }

    /// Records that `user` started watching `vm`'s live picture (a view,
    /// like a view-only console: the audit log, and the event log for
    /// someone else's VM). The caller calls it once per watch.
    pub async fn record_picture_watch(&self, user: &User, vm: &Vm) {
        self.record_open(user, vm, "picture", "view").await;
    }

    /// Redeems a token for a session: `session_user` is the user whose
    /// session cookie came with the request (browsers send it; tools need
    /// not). The token is void if the VM stopped, restarted or moved since
    /// it was issued.
    pub async fn admit(
        &self,
        token: &str,
        session_user: Option<Uuid>,
    ) -> Result<Admitted, ConsoleError> {
        let ticket = redeemed(self.hub.redeem(token).await?, session_user)?;
        let (vm, target) = self
            .target(ticket.vm_id)
            .await
            .map_err(|_| ConsoleError::NotRunning)?;
        same_boot(&ticket, &vm)?;
        Ok(Admitted { ticket, target })
    }

    /// A single-use token for the serial console of a running VM the user
    /// may reach (the same rules as [`Console::issue`]).
    pub async fn issue_serial(
        &self,
        user: &User,
        vm_id: Uuid,
    ) -> Result<SerialIssued, ConsoleError> {
        self.vms.get_for(user, vm_id).await?;
        let (vm, _, _) = self.vms.running_on_node(vm_id).await?;
        let node_id = vm.node_id.ok_or(ConsoleError::NotRunning)?;
        let token = self
            .hub
            .issue_for(
                ConsoleKind::Serial,
                vm.id,
                user.id,
                node_id,
                vm.last_started_at.clone().unwrap_or_default(),
            )
            .await?;
        Ok(SerialIssued {
            token,
            expires_in: self.hub.ttl,
        })
    }

    /// Redeems a serial console token (the rules of [`Console::admit`]) and
    /// opens the VM's serial console, taking it over from any other session.
    pub async fn admit_serial(
        &self,
        token: &str,
        session_user: Option<Uuid>,
    ) -> Result<SerialAdmitted, ConsoleError> {
        let ticket = self.hub.redeem_for(ConsoleKind::Serial, token).await?;
        let ticket = redeemed(ticket, session_user)?;
        let (vm, _, conn) = self
            .vms
            .running_on_node(ticket.vm_id)
            .await
            .map_err(|_| ConsoleError::NotRunning)?;
        same_boot(&ticket, &vm)?;
        let console = conn
            .open_serial(&self.vms.domain_name(vm.id))
            .await
            .map_err(|e| ConsoleError::Vm(e.into()))?
            .ok_or(ConsoleError::NotRunning)?;
        Ok(SerialAdmitted { ticket, console })
    }

    /// A console WebSocket of `kind`: its token redeemed (the rules of
    /// [`Console::admit`]), then the session relayed.
    pub async fn connect(
        &self,
        kind: ConsoleKind,
        ws: super::ws::Upgrade,
        token: &str,
        session_user: Option<Uuid>,
    ) -> Result<axum::response::Response, ConsoleError> {
        Ok(match kind {
            ConsoleKind::Graphics => self.upgrade(ws, self.admit(token, session_user).await?),
            ConsoleKind::Serial => {
                self.upgrade_serial(ws, self.admit_serial(token, session_user).await?)
            }
        })
    }

    /// Relays an admitted serial session over the upgraded WebSocket.
    pub fn upgrade_serial(
        &self,
        ws: super::ws::Upgrade,
        admitted: SerialAdmitted,
    ) -> axum::response::Response {
        self.hub
            .clone()
            .upgrade_serial(ws, admitted.ticket, admitted.console)
    }

    /// Relays an admitted session over the upgraded WebSocket.
    pub fn upgrade(&self, ws: super::ws::Upgrade, admitted: Admitted) -> axum::response::Response {
        self.hub
            .clone()
            .upgrade(ws, admitted.ticket, admitted.target)
    }

    /// What the proxy connects to: the running VM's console and the password
    /// it requires *now*, read from libvirt at every connect. If that
    /// password has expired (a viewer password's `passwdValidTo` passed), a
    /// fresh per-boot password without expiry replaces it first, so the
    /// proxy always gets in.
    pub async fn target(&self, id: Uuid) -> Result<(Vm, ConsoleTarget), VmError> {
        let (vm, node, conn) = self.vms.running_on_node(id).await?;
        let name = self.vms.domain_name(vm.id);
        let (graphics, mut auth) = conn.console(&name).await?.ok_or_else(no_console)?;
        if password_expired(&auth) {
            let _guard = self.passwords.lock().await;
            // Another connect may have renewed it while we waited.
            let (_, current) = conn.console(&name).await?.ok_or_else(no_console)?;
            auth = current;
            if password_expired(&auth) {
                let fresh = libvirt::new_console_password(graphics.kind);
                conn.set_console_password(&name, &fresh, None)
                    .await?
                    .ok_or_else(no_console)?;
                auth.password = Some(fresh);
                auth.valid_to = None;
            }
        }
        let target = ConsoleTarget {
            host: node.console_address,
            port: graphics.port,
            protocol: graphics.kind,
            password: auth.password,
        };
        Ok((vm, target))
    }

    /// A one-time console password for a native viewer (`.vv` file) of a VM
    /// the user may reach: a fresh random password set on the live console
    /// with `passwdValidTo` = now + the viewer TTL, replacing the per-boot
    /// one (sessions already open stay open). Never log the result.
    pub async fn viewer_password(&self, user: &User, id: Uuid) -> Result<ViewerPassword, VmError> {
        self.vms.get_for(user, id).await?;
        let (vm, node, conn) = self.vms.running_on_node(id).await?;
        let name = self.vms.domain_name(vm.id);
        let _guard = self.passwords.lock().await;
        let kind = conn.console(&name).await?.ok_or_else(no_console)?.0.kind;
        let password = libvirt::new_console_password(kind);
        let ttl = time::Duration::seconds(i64::try_from(self.viewer_ttl.as_secs()).unwrap_or(3600));
        // Whole seconds: that is what libvirt stores.
        let valid_to = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            + ttl;
        let live = conn
            .set_console_password(&name, &password, Some(valid_to))
            .await?
            .ok_or_else(no_console)?;
        let (owner, context) = labels(&self.pool, &vm).await?;
        self.record_open(user, &vm, "viewer", "control").await;
        Ok(ViewerPassword {
            title: format!("{owner} / {context} / {}", vm.name),
            vm,
            kind: live.kind,
            host: node.console_address,
            port: live.port,
            password,
            valid_to,
        })
    }

    /// Records that `user` opened `vm`'s console (`via` the browser, a
    /// native viewer or the live picture; `mode` "view" or "control") —
    /// every open, so a teacher or staff member viewing a student's screen
    /// is always on record (`detail.other_user`), in the audit log and, for
    /// someone else's VM, in the event log (watched / taken over).
    async fn record_open(&self, user: &User, vm: &Vm, via: &str, mode: &str) {
        use crate::audit::{Action, Actor, Entry};
        let (target, owner, course) = crate::vms::audit_target(&self.pool, vm).await;
        let entry = Entry::new(
            Actor::user(user.id, &user.username),
            Action::ConsoleOpen,
            target,
        )
        .detail(serde_json::json!({
            "via": via,
            "owner_id": vm.owner_id,
            "owner": owner,
            "course": course,
            "other_user": vm.owner_id != user.id,
            "role": user.role.as_str(),
            "mode": mode,
        }));
        crate::audit::record(&self.pool, entry).await;
        if vm.owner_id != user.id {
            use crate::events::{EventKind, NewEvent};
            let (kind, verb) = if mode == "view" {
                (EventKind::ConsoleWatched, "is watching")
            } else {
                (EventKind::ConsoleTakenOver, "took control of")
            };
            let message = format!(
                "{} {verb} {owner}'s VM {} ({course})",
                user.username, vm.name
            );
            crate::events::record(
                &self.pool,
                NewEvent::site(kind, message)
                    .vm(vm.id)
                    .by(Some(&user.username)),
            )
            .await;
        }
    }

    /// Ends console sessions when their VM stops or their node stops
    /// answering, until an event stream ends (the caller supervises and
    /// restarts it). Tokens issued before a restart name the old boot and are
    /// refused on redeem, so only stops need acting on here. A node that
    /// stops answering ends its sessions as unreachable (an error for the
    /// service levels), not whenever TCP gives up.
    ///
    /// Two sources, because a session is relayed by the server the browser
    /// reached while the VM may be stopped, moved or its node declared down
    /// through another server (several servers behind a balancer): this
    /// server's own events end sessions at once, and every
    /// [`SESSION_CHECK_EVERY`] the live sessions are compared with the
    /// database ([`stale_sessions`]), which every server writes.
    pub async fn close_ended_sessions(&self) {
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.vms.subscribe();
        let mut changes = self.nodes.watch();
        let mut check = tokio::time::interval(SESSION_CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) if matches!(ev.state, VmState::Stopped | VmState::Error) => {
                        self.hub.end_vm(ev.vm_id, close::VM_STOPPED, "VM stopped").await;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                c = changes.recv() => match c {
                    Ok(c) if !c.up => self.hub.end_node(c.node),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = check.tick() => {
                    if let Err(e) = self.end_stale_sessions().await {
                        tracing::warn!(error = %e, "console sessions not checked against the database");
                    }
                }
            }
        }
    }

    /// Ends the sessions on this server whose VM, as the database has it,
    /// no longer runs in their boot on their node, or whose node is down.
    async fn end_stale_sessions(&self) -> Result<(), sqlx::Error> {
        use sqlx::Row;
        let live = self.hub.live();
        if live.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<String> = live.iter().map(|s| s.vm_id.to_string()).collect();
        ids.dedup();
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = crate::db::numbered(&format!(
            "SELECT id, state, node_id, last_started_at FROM vms WHERE id IN ({marks})"
        ));
        let mut q = sqlx::query(&sql);
        for id in &ids {
            q = q.bind(id);
        }
        let mut now = std::collections::HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            let node: Option<String> = r.try_get("node_id")?;
            now.insert(
                crate::db::uuid(&r, "id")?,
                VmNow {
                    ended: [VmState::Stopped.as_str(), VmState::Error.as_str()]
                        .contains(&r.try_get::<String, _>("state")?.as_str()),
                    node_id: node.as_deref().map(crate::db::parse_uuid).transpose()?,
                    boot: r
                        .try_get::<Option<String>, _>("last_started_at")?
                        .unwrap_or_default(),
                },
            );
        }
        let down: std::collections::HashSet<Uuid> =
            sqlx::query_scalar::<_, String>("SELECT id FROM nodes WHERE state = 'down'")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|id| crate::db::parse_uuid(id))
                .collect::<Result<_, _>>()?;
        for (s, code, reason) in stale_sessions(&live, &now, &down) {
            self.hub.end_boot(s.vm_id, &s.boot, code, reason);
        }
        Ok(())
    }
}

/// How often a server compares its live console sessions with the database.
pub const SESSION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A VM as the database has it now, for [`stale_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNow {
    /// Stopped or failed: no boot goes on.
    pub ended: bool,
    pub node_id: Option<Uuid>,
    pub boot: String,
}

/// The live sessions that must end, with the close code and reason: the
/// session's node is down (unreachable); the VM is gone, stopped or failed,
/// or in another boot (a restart: stopped); it is on another node (moved).
/// A VM still starting, running or stopping in the session's boot keeps
/// its sessions (a user may watch a shutdown that takes its time).
pub fn stale_sessions<'a>(
    live: &'a [LiveSession],
    now: &std::collections::HashMap<Uuid, VmNow>,
    down: &std::collections::HashSet<Uuid>,
) -> Vec<(&'a LiveSession, u16, &'static str)> {
    live.iter()
        .filter_map(|s| {
            if down.contains(&s.node_id) {
                return Some((s, close::NODE_UNREACHABLE, "node unreachable"));
            }
            match now.get(&s.vm_id) {
                Some(v) if !v.ended && v.boot == s.boot => (v.node_id != Some(s.node_id))
                    .then_some((s, close::VM_MOVED, "VM moved to another node")),
                _ => Some((s, close::VM_STOPPED, "VM stopped")),
            }
        })
        .collect()
}

/// A redeemed token, refused when a browser's login session names someone
/// other than the user it was issued to.
fn redeemed(ticket: IssuedToken, session_user: Option<Uuid>) -> Result<IssuedToken, ConsoleError> {
    if session_user.is_some_and(|u| u != ticket.user_id) {
        return Err(ConsoleError::BadToken);
    }
    Ok(ticket)
}

/// A token is void once the VM stopped, restarted or moved since it was issued.
fn same_boot(ticket: &IssuedToken, vm: &Vm) -> Result<(), ConsoleError> {
    if vm.node_id != Some(ticket.node_id)
        || vm.last_started_at.clone().unwrap_or_default() != ticket.boot
    {
        return Err(ConsoleError::BadToken);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn session(vm: Uuid, node: Uuid, boot: &str) -> LiveSession {
        LiveSession {
            vm_id: vm,
            node_id: node,
            boot: boot.into(),
        }
    }

    fn now(vm: Uuid, ended: bool, node: Option<Uuid>, boot: &str) -> HashMap<Uuid, VmNow> {
        HashMap::from([(
            vm,
            VmNow {
                ended,
                node_id: node,
                boot: boot.into(),
            },
        )])
    }

    fn codes(live: &[LiveSession], now: &HashMap<Uuid, VmNow>, down: &HashSet<Uuid>) -> Vec<u16> {
        stale_sessions(live, now, down)
            .into_iter()
            .map(|(_, code, _)| code)
            .collect()
    }

    #[test]
    fn sessions_of_a_vm_running_in_their_boot_stay() {
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let live = [session(vm, node, "b1")];
        let none = HashSet::new();
        assert!(codes(&live, &now(vm, false, Some(node), "b1"), &none).is_empty());
    }

    #[test]
    fn a_stop_a_restart_a_deletion_or_a_move_ends_the_session() {
        let (vm, node, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let live = [session(vm, node, "b1")];
        let none = HashSet::new();
        let stopped = now(vm, true, None, "b1");
        assert_eq!(codes(&live, &stopped, &none), [close::VM_STOPPED]);
        let restarted = now(vm, false, Some(node), "b2");
        assert_eq!(codes(&live, &restarted, &none), [close::VM_STOPPED]);
        assert_eq!(codes(&live, &HashMap::new(), &none), [close::VM_STOPPED]);
        let moved = now(vm, false, Some(other), "b1");
        assert_eq!(codes(&live, &moved, &none), [close::VM_MOVED]);
    }

    #[test]
    fn a_down_node_ends_its_sessions_as_unreachable_whatever_the_vm_row_says() {
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let live = [session(vm, node, "b1")];
        let down = HashSet::from([node]);
        let running = now(vm, false, Some(node), "b1");
        assert_eq!(codes(&live, &running, &down), [close::NODE_UNREACHABLE]);
    }

    #[test]
    fn only_the_stale_boot_of_a_vm_is_named() {
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let live = [session(vm, node, "b1"), session(vm, node, "b2")];
        let got = stale_sessions(&live, &now(vm, false, Some(node), "b2"), &HashSet::new());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.boot, "b1");
    }
}
