//! The reconcile rule: what to do about one VM given what the database says
//! (its state, its node, whether a shutdown of it is in flight) and what
//! libvirt says on the node looked at (unreachable, no domain, or the
//! domain's state). A pure function, so every combination is a row of the
//! table below; reads of one VM ([`super::VmManager::refresh`]) and the
//! periodic pass over every node both act on it, so they never disagree.
//!
//! Only asked for VMs whose lifecycle lock is free (or held by the caller
//! itself): an operation in flight writes its own outcome.

use uuid::Uuid;

use super::model::VmState;
use crate::libvirt::DomainState;

/// What the database says about a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded {
    pub state: VmState,
    /// The node the VM is (or was last) active on.
    pub node: Option<Uuid>,
    /// Where a graceful shutdown of this VM stands ([`stop_of`]).
    pub stop: Stop,
}

/// Where a graceful shutdown of a VM stands, as far as reconciling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// None is known to wait: the VM is not `stopping`, or it is without a
    /// readable deadline (the guest began shutting down by itself, or a
    /// stop died with a server too old to record deadlines) — a live domain
    /// is then adopted as running.
    None,
    /// One waits for the guest: `stopping` with a live domain is expected.
    Pending,
    /// Its deadline passed more than [`STOP_GRACE`] ago and no server
    /// waits any more: the one that asked died. The VM is forced off, as
    /// the shutdown promised (the UI showed "forced off at …").
    Overdue,
}

/// How long after a shutdown's deadline another server's wait may still be
/// finishing (its force-off, then its write): reconciling leaves the VM to
/// it until then.
pub const STOP_GRACE: time::Duration = time::Duration::seconds(30);

/// Where the graceful shutdown of a VM in `state` stands at `now`: pending
/// while this server waits for it (`waiting_here`), or until the deadline
/// written with it (`stop_deadline`, RFC 3339) and [`STOP_GRACE`] after
/// have passed — the shutdown may be another server's, whose wait this
/// server cannot see; overdue after that. An unreadable deadline is none.
pub(super) fn stop_of(
    state: VmState,
    stop_deadline: Option<&str>,
    waiting_here: bool,
    now: time::OffsetDateTime,
) -> Stop {
    if waiting_here {
        return Stop::Pending;
    }
    if state != VmState::Stopping {
        return Stop::None;
    }
    let deadline = stop_deadline.and_then(|d| {
        time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok()
    });
    match deadline {
        None => Stop::None,
        Some(d) if now < d + STOP_GRACE => Stop::Pending,
        Some(_) => Stop::Overdue,
    }
}

/// Whether the graceful shutdown that recorded `deadline` is still the VM's
/// operation: the VM is `stopping` with exactly that deadline. A power-off,
/// a refresh that found the guest already off, a new start or a later
/// shutdown (with its own deadline) has taken the VM over, and the task
/// waiting for this shutdown's guest must then neither force off nor mark
/// stopped what it finds: that would be the student's next run.
pub(super) fn own_stop(state: VmState, stop_deadline: Option<&str>, deadline: &str) -> bool {
    state == VmState::Stopping && stop_deadline == Some(deadline)
}

/// What libvirt says on the node looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// The node does not answer (or is marked down).
    Unreachable,
    /// The node answered: the VM's domain there and its state, if any.
    Domain(Option<DomainState>),
}

/// What to do about the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    None,
    /// Its node stopped answering: it may still run there (and hold its
    /// layer), so it is `node_down` until the node answers or is fenced.
    MarkNodeDown,
    /// The VM is recorded as active on another node (its *home*): if it
    /// runs there, this copy is stale (this node was fenced meanwhile) and
    /// must not keep writing the layer — but first [`resolve_copy`] asks
    /// the home node, since a live migration whose server died after the
    /// domain moved leaves the only copy here.
    DestroyStaleCopy,
    /// The domain runs here but the database says otherwise — including a
    /// `starting`/`stopping` whose operation died with a previous server
    /// process.
    Adopt,
    /// The domain is still there but not running (shutting down, crashed):
    /// QEMU may hold the layer, so the VM is not stopped yet.
    MarkStopping,
    /// No domain here for a VM the database thinks is active (for a
    /// `node_down` VM this is the fence: the node answers and runs nothing).
    MarkStopped {
        interrupted_start: bool,
    },
    /// Its graceful shutdown is overdue ([`Stop::Overdue`]): force the
    /// domain off here, then the VM is stopped.
    ForceOff,
}

/// The rule (see the module doc). `node` is the node looked at.
pub(super) fn decide(vm: Recorded, node: Uuid, seen: Seen) -> Action {
    let Recorded {
        state,
        node: vm_node,
        stop,
    } = vm;
    let here = vm_node == Some(node);
    let domain = match seen {
        Seen::Unreachable => {
            return if here && state.is_active() && state != VmState::NodeDown {
                Action::MarkNodeDown
            } else {
                Action::None
            };
        }
        Seen::Domain(d) => d,
    };
    let alive = matches!(domain, Some(DomainState::Running | DomainState::Paused));
    // A domain still shutting down holds the layer: not stopped yet.
    let present = domain.is_some_and(|s| s != DomainState::Shutoff);
    if alive && !here && vm_node.is_some() && state.is_active() {
        Action::DestroyStaleCopy
    } else if alive && !here {
        Action::Adopt
    } else if present && here && state == VmState::Stopping && stop == Stop::Overdue {
        Action::ForceOff
    } else if alive {
        let expected =
            state == VmState::Running || (state == VmState::Stopping && stop == Stop::Pending);
        if expected {
            Action::None
        } else {
            Action::Adopt
        }
    } else if present && here && state.is_active() && state != VmState::Stopping {
        Action::MarkStopping
    } else if !present && here && state.is_active() {
        Action::MarkStopped {
            interrupted_start: state == VmState::Starting,
        }
    } else {
        Action::None
    }
}

/// What to do about a live copy on another node than the VM's recorded
/// home ([`Action::DestroyStaleCopy`] from [`decide`]), given what the home
/// node says: it runs the VM → this copy is stale, destroy it; it has no
/// domain or a dead one → this copy is the VM (a live migration finished on
/// libvirt's side but not in the database): adopt it here; its domain is
/// still shutting down → nothing yet. The home does not answer → destroy,
/// as before homes were asked: a copy the home may also run could write the
/// layer beside it (a corrupt layer loses the student's work), while
/// destroying the only copy loses no more than a power cut would.
pub(super) fn resolve_copy(home: Seen) -> Action {
    match home {
        Seen::Domain(Some(DomainState::Running | DomainState::Paused)) | Seen::Unreachable => {
            Action::DestroyStaleCopy
        }
        Seen::Domain(None | Some(DomainState::Shutoff | DomainState::Crashed)) => Action::Adopt,
        Seen::Domain(Some(_)) => Action::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DomainState::{Crashed, Paused, Running, Shutoff, ShuttingDown};
    use VmState::{NodeDown, Starting, Stopped, Stopping};

    fn rec(state: VmState, node: Option<Uuid>) -> Recorded {
        Recorded {
            state,
            node,
            stop: Stop::None,
        }
    }

    #[test]
    fn reconcile_settles_every_transitional_state() {
        let here = Uuid::new_v4();
        let other = Uuid::new_v4();
        let act = |s, n, d| decide(rec(s, n), here, Seen::Domain(d));
        // A start or stop that died with the server: the domain decides.
        assert_eq!(act(Starting, Some(here), Some(Running)), Action::Adopt);
        assert_eq!(act(Stopping, Some(here), Some(Running)), Action::Adopt);
        assert_eq!(
            act(Starting, Some(here), None),
            Action::MarkStopped {
                interrupted_start: true
            }
        );
        assert_eq!(
            act(Stopping, Some(here), None),
            Action::MarkStopped {
                interrupted_start: false
            }
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Shutoff)),
            Action::MarkStopped {
                interrupted_start: false
            }
        );
        // Steady states are left alone.
        assert_eq!(
            act(VmState::Running, Some(here), Some(Running)),
            Action::None
        );
        assert_eq!(
            act(VmState::Running, Some(here), Some(Paused)),
            Action::None
        );
        assert_eq!(act(Stopped, None, None), Action::None);
        // A stopped VM found running here is adopted; a copy of a VM active
        // elsewhere is destroyed.
        assert_eq!(act(Stopped, None, Some(Running)), Action::Adopt);
        assert_eq!(
            act(VmState::Running, Some(other), Some(Running)),
            Action::DestroyStaleCopy
        );
        // Another node's VM with no domain here is not this pass's business.
        assert_eq!(act(VmState::Running, Some(other), None), Action::None);
    }

    #[test]
    fn a_copy_elsewhere_is_adopted_only_when_its_home_has_none() {
        let home = |d| resolve_copy(Seen::Domain(d));
        assert_eq!(home(Some(Running)), Action::DestroyStaleCopy);
        assert_eq!(home(Some(Paused)), Action::DestroyStaleCopy);
        // A migration whose server died after the domain moved.
        assert_eq!(home(None), Action::Adopt);
        assert_eq!(home(Some(Shutoff)), Action::Adopt);
        assert_eq!(home(Some(Crashed)), Action::Adopt);
        // Still shutting down there: wait.
        assert_eq!(home(Some(ShuttingDown)), Action::None);
        // Unknown: two writers of one layer are worse than a lost copy.
        assert_eq!(resolve_copy(Seen::Unreachable), Action::DestroyStaleCopy);
    }

    #[test]
    fn a_shutdown_is_pending_here_or_until_its_deadline_and_grace_then_overdue() {
        let now = time::macros::datetime!(2026-12-05 10:00 UTC);
        let at = |hms: &str| Some(format!("2026-12-05T{hms}Z"));
        let stop = |state, d: Option<String>, here| stop_of(state, d.as_deref(), here, now);
        assert_eq!(stop(VmState::Running, None, true), Stop::Pending);
        assert_eq!(stop(VmState::Stopping, at("09:00:00"), true), Stop::Pending);
        // Another server's shutdown, within its deadline or the grace after.
        assert_eq!(
            stop(VmState::Stopping, at("10:00:30"), false),
            Stop::Pending
        );
        assert_eq!(
            stop(VmState::Stopping, at("10:00:00"), false),
            Stop::Pending
        );
        assert_eq!(
            stop(VmState::Stopping, at("09:59:31"), false),
            Stop::Pending
        );
        // Past both: the server that asked died.
        assert_eq!(
            stop(VmState::Stopping, at("09:59:30"), false),
            Stop::Overdue
        );
        assert_eq!(
            stop(VmState::Stopping, at("09:00:00"), false),
            Stop::Overdue
        );
        // No deadline to keep: the guest's own shutdown, or an older stop.
        assert_eq!(
            stop(VmState::Stopping, Some("garbage".into()), false),
            Stop::None
        );
        assert_eq!(stop(VmState::Stopping, None, false), Stop::None);
        // Only a stopping VM has a stop in flight.
        assert_eq!(stop(VmState::Running, at("09:00:00"), false), Stop::None);
    }

    #[test]
    fn an_overdue_shutdown_is_forced_off_where_the_vm_is() {
        let (here, there) = (Uuid::new_v4(), Uuid::new_v4());
        let vm = Recorded {
            stop: Stop::Overdue,
            ..rec(Stopping, Some(here))
        };
        for d in [Running, Paused, ShuttingDown, Crashed] {
            assert_eq!(decide(vm, here, Seen::Domain(Some(d))), Action::ForceOff);
        }
        // Already gone: stopped; a live copy elsewhere is the stale-copy
        // case, never forced off from here without asking its home.
        assert_eq!(
            decide(vm, here, Seen::Domain(None)),
            Action::MarkStopped {
                interrupted_start: false
            }
        );
        assert_eq!(
            decide(vm, there, Seen::Domain(Some(Running))),
            Action::DestroyStaleCopy
        );
        assert_eq!(decide(vm, here, Seen::Unreachable), Action::MarkNodeDown);
        // Without a deadline (the guest shuts down by itself): adopted.
        assert_eq!(
            decide(rec(Stopping, Some(here)), here, Seen::Domain(Some(Running))),
            Action::Adopt
        );
    }

    #[test]
    fn a_shutdown_is_its_vms_operation_only_until_something_else_takes_over() {
        let mine = "2026-12-05T10:00:30Z";
        assert!(own_stop(VmState::Stopping, Some(mine), mine));
        // Powered off, or found off by a refresh, then maybe started again.
        assert!(!own_stop(VmState::Stopped, None, mine));
        assert!(!own_stop(VmState::Starting, None, mine));
        assert!(!own_stop(VmState::Running, None, mine));
        // A later shutdown of the new run waits on its own deadline.
        assert!(!own_stop(
            VmState::Stopping,
            Some("2026-12-05T10:01:10Z"),
            mine
        ));
        assert!(!own_stop(VmState::Stopping, None, mine));
        assert!(!own_stop(VmState::NodeDown, Some(mine), mine));
    }

    #[test]
    fn a_shutdown_in_flight_keeps_its_vm_stopping() {
        let here = Uuid::new_v4();
        let vm = Recorded {
            stop: Stop::Pending,
            ..rec(Stopping, Some(here))
        };
        assert_eq!(decide(vm, here, Seen::Domain(Some(Running))), Action::None);
        // The guest is gone: stopped, whoever notices first.
        assert_eq!(
            decide(vm, here, Seen::Domain(None)),
            Action::MarkStopped {
                interrupted_start: false
            }
        );
    }

    #[test]
    fn a_domain_that_is_there_but_not_running_holds_the_layer() {
        let here = Uuid::new_v4();
        for d in [ShuttingDown, Crashed] {
            assert_eq!(
                decide(
                    rec(VmState::Running, Some(here)),
                    here,
                    Seen::Domain(Some(d))
                ),
                Action::MarkStopping,
                "{d:?}"
            );
            assert_eq!(
                decide(rec(Stopping, Some(here)), here, Seen::Domain(Some(d))),
                Action::None,
                "{d:?}"
            );
        }
    }

    #[test]
    fn an_unreachable_node_makes_its_active_vms_node_down_once() {
        let here = Uuid::new_v4();
        let other = Uuid::new_v4();
        for s in [Starting, VmState::Running, Stopping] {
            assert_eq!(
                decide(rec(s, Some(here)), here, Seen::Unreachable),
                Action::MarkNodeDown
            );
            // Active on another node: not this node's business.
            assert_eq!(
                decide(rec(s, Some(other)), here, Seen::Unreachable),
                Action::None
            );
        }
        assert_eq!(
            decide(rec(NodeDown, Some(here)), here, Seen::Unreachable),
            Action::None
        );
        assert_eq!(
            decide(rec(Stopped, None), here, Seen::Unreachable),
            Action::None
        );
    }

    #[test]
    fn a_node_down_vm_is_settled_when_its_node_answers() {
        let here = Uuid::new_v4();
        let act = |d| decide(rec(NodeDown, Some(here)), here, Seen::Domain(d));
        assert_eq!(act(Some(Running)), Action::Adopt);
        assert_eq!(
            act(None),
            Action::MarkStopped {
                interrupted_start: false
            }
        );
        assert_eq!(act(Some(ShuttingDown)), Action::MarkStopping);
    }
}
