//! A ticket's priority from impact × urgency (seed 001: ranked by business
//! impact and how many users are affected).
//!
//! Impact is computed, never chosen: how many users' VMs share the affected
//! node (or, for a VM that is not placed, its template's failing VMs) —
//! one user, a class, or the whole lab. Urgency is what the reporter says:
//! a class is in session now, their work is blocked, or it is not blocking.
//! Staff may override the result, with a reason, in the ticket's timeline.
//! Everything here is pure.

use serde::{Deserialize, Serialize};

/// From this many affected users on, a problem is the whole lab's.
pub const LAB_USERS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    User,
    Class,
    Lab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// A class is in session now.
    InSession,
    /// The reporter cannot work.
    #[default]
    Blocked,
    NotBlocking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl Impact {
    /// The impact of a problem that affects `users` users.
    pub fn of_users(users: u64) -> Self {
        match users {
            0 | 1 => Impact::User,
            n if n < LAB_USERS => Impact::Class,
            _ => Impact::Lab,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Impact::User => "user",
            Impact::Class => "class",
            Impact::Lab => "lab",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Impact::User, Impact::Class, Impact::Lab]
            .into_iter()
            .find(|i| i.as_str() == s)
    }
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::InSession => "in_session",
            Urgency::Blocked => "blocked",
            Urgency::NotBlocking => "not_blocking",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Urgency::InSession, Urgency::Blocked, Urgency::NotBlocking]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: &'static [Priority] = &[Priority::P1, Priority::P2, Priority::P3, Priority::P4];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }
}

/// The priority matrix:
///
/// | impact \ urgency | in session | blocked | not blocking |
/// |---|---|---|---|
/// | lab   | P1 | P1 | P2 |
/// | class | P1 | P2 | P3 |
/// | user  | P2 | P3 | P4 |
pub fn priority(impact: Impact, urgency: Urgency) -> Priority {
    use Impact as I;
    use Priority as P;
    use Urgency as U;
    match (impact, urgency) {
        (I::Lab, U::InSession | U::Blocked) | (I::Class, U::InSession) => P::P1,
        (I::Lab, U::NotBlocking) | (I::Class, U::Blocked) | (I::User, U::InSession) => P::P2,
        (I::Class, U::NotBlocking) | (I::User, U::Blocked) => P::P3,
        (I::User, U::NotBlocking) => P::P4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_matrix_corners() {
        assert_eq!(priority(Impact::Lab, Urgency::InSession), Priority::P1);
        assert_eq!(priority(Impact::User, Urgency::NotBlocking), Priority::P4);
        assert_eq!(priority(Impact::User, Urgency::Blocked), Priority::P3);
        assert_eq!(priority(Impact::Class, Urgency::Blocked), Priority::P2);
    }

    #[test]
    fn impact_from_the_number_of_users() {
        assert_eq!(Impact::of_users(0), Impact::User);
        assert_eq!(Impact::of_users(1), Impact::User);
        assert_eq!(Impact::of_users(2), Impact::Class);
        assert_eq!(Impact::of_users(LAB_USERS - 1), Impact::Class);
        assert_eq!(Impact::of_users(LAB_USERS), Impact::Lab);
    }

    #[test]
    fn names_round_trip() {
        for p in [Priority::P1, Priority::P2, Priority::P3, Priority::P4] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        for u in [Urgency::InSession, Urgency::Blocked, Urgency::NotBlocking] {
            assert_eq!(Urgency::parse(u.as_str()), Some(u));
            assert_eq!(serde_json::to_value(u).ok(), Some(u.as_str().into()));
        }
        for i in [Impact::User, Impact::Class, Impact::Lab] {
            assert_eq!(Impact::parse(i.as_str()), Some(i));
        }
    }

    fn urgency() -> impl Strategy<Value = Urgency> {
        prop_oneof![
            Just(Urgency::InSession),
            Just(Urgency::Blocked),
            Just(Urgency::NotBlocking)
        ]
    }

    proptest! {
        /// More users affected never lowers the priority; nor does more urgency.
        #[test]
        fn priority_is_monotonic(a in 0u64..100, b in 0u64..100, u in urgency()) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(priority(Impact::of_users(hi), u) <= priority(Impact::of_users(lo), u));
            let more_urgent = match u {
                Urgency::NotBlocking => Urgency::Blocked,
                _ => Urgency::InSession,
            };
            let i = Impact::of_users(a);
            prop_assert!(priority(i, more_urgent) <= priority(i, u));
        }
    }
}
