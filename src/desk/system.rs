//! System tickets: incidents the server opens itself (channel `system`)
//! when a node goes down with VMs on it, or a VM keeps failing to start.
//!
//! The decision — open a new incident, join the one already open, annotate
//! it, or do nothing — is the pure function [`decide`]; the desk service
//! (`Desk::node_changed`) gathers the facts and writes the result.
//!
//! Invariants:
//! - At most one open system incident per subject (a node, or a VM for
//!   start failures): a repeated fault joins it with a work-log line.
//! - A node coming back never closes its incident silently: it adds a
//!   work-log line, and staff resolve it once they have checked.
//! - A node going down with nobody's VM on it opens nothing.

/// What happened to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The node stopped answering; `users` is how many users' VMs run on it.
    NodeDown { users: u64 },
    /// The node answers again.
    NodeUp,
    /// A VM failed to start; `recent` counts its failures in the window
    /// (this one included).
    StartFailed { recent: u32 },
}

/// Start failures within [`FAILURE_WINDOW_MINUTES`] that open an incident.
pub const FAILURE_THRESHOLD: u32 = 3;
/// The window start failures are counted in.
pub const FAILURE_WINDOW_MINUTES: i64 = 60;

/// What the desk does about a fact, given the subject's open system
/// incident (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<T> {
    /// Open a new system incident.
    Open,
    /// The fault repeats: a work-log line on the open incident.
    Join(T),
    /// The subject recovered: a work-log line on the open incident.
    Annotate(T),
    Nothing,
}

pub fn decide<T>(fact: Fact, open: Option<T>) -> Decision<T> {
    match (fact, open) {
        (Fact::NodeDown { .. } | Fact::StartFailed { .. }, Some(t)) => Decision::Join(t),
        (Fact::NodeDown { users }, None) if users > 0 => Decision::Open,
        (Fact::StartFailed { recent }, None) if recent >= FAILURE_THRESHOLD => Decision::Open,
        (Fact::NodeUp, Some(t)) => Decision::Annotate(t),
        _ => Decision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_down_with_users_opens_one_incident_then_joins_it() {
        assert_eq!(
            decide::<u8>(Fact::NodeDown { users: 2 }, None),
            Decision::Open
        );
        assert_eq!(
            decide(Fact::NodeDown { users: 2 }, Some(7)),
            Decision::Join(7)
        );
        // Even if nobody is on it any more: the open incident hears of it.
        assert_eq!(
            decide(Fact::NodeDown { users: 0 }, Some(7)),
            Decision::Join(7)
        );
    }

    #[test]
    fn an_empty_node_going_down_opens_nothing() {
        assert_eq!(
            decide::<u8>(Fact::NodeDown { users: 0 }, None),
            Decision::Nothing
        );
    }

    #[test]
    fn a_node_back_up_annotates_its_incident_and_never_opens_one() {
        assert_eq!(decide(Fact::NodeUp, Some(3)), Decision::Annotate(3));
        assert_eq!(decide::<u8>(Fact::NodeUp, None), Decision::Nothing);
    }

    #[test]
    fn start_failures_open_at_the_threshold_and_join_after() {
        for recent in 0..FAILURE_THRESHOLD {
            assert_eq!(
                decide::<u8>(Fact::StartFailed { recent }, None),
                Decision::Nothing,
                "{recent}"
            );
        }
        assert_eq!(
            decide::<u8>(
                Fact::StartFailed {
                    recent: FAILURE_THRESHOLD
                },
                None
            ),
            Decision::Open
        );
        assert_eq!(
            decide(Fact::StartFailed { recent: 1 }, Some(9)),
            Decision::Join(9)
        );
    }
}
