//! The 15-minute extension, pure: whether a student may keep their VM
//! [`EXTENSION`] past the end of their session, from (the teacher's rule,
//! the session, the other classes' sessions, the lead of their pre-start,
//! whether the VM was extended already, `now`).
//!
//! Invariants ([`decide`]): asked only in the session's last fifteen
//! minutes (when the T−15 warning is due) and once per VM and session; only
//! where the course's teacher allows it; never when another class's session
//! (its pre-start included) begins before the extended end — that class
//! needs the nodes. Which node another class would get is placement's
//! choice, so "needs the node" is taken cluster-wide: conservative.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::timetable::Occurrence;

/// How much longer a VM may run.
pub const EXTENSION: Duration = Duration::minutes(15);

/// Why an extension is refused (each its own API code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The course's teacher does not allow it.
    Denied,
    /// Not in the session's last fifteen minutes.
    NotNow,
    /// This VM was extended in this session already.
    Already,
    /// Another class begins before the extended end.
    NodeNeeded,
}

/// Until when the VM may run, or why not.
pub fn decide(
    allowed: bool,
    session: &Occurrence,
    others: &[Occurrence],
    lead: Duration,
    already: bool,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, Refusal> {
    if !allowed {
        return Err(Refusal::Denied);
    }
    if super::class::end_warning(session.ends_at, now).is_none() {
        return Err(Refusal::NotNow);
    }
    if already {
        return Err(Refusal::Already);
    }
    let until = session.ends_at + EXTENSION;
    if others
        .iter()
        .any(|o| o.starts_at - lead < until && o.ends_at > session.ends_at)
    {
        return Err(Refusal::NodeNeeded);
    }
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn occ(start: i64, end: i64) -> Occurrence {
        let t0 = datetime!(2026-12-07 08:00 UTC);
        Occurrence {
            starts_at: t0 + Duration::minutes(start),
            ends_at: t0 + Duration::minutes(end),
        }
    }
    fn at(m: i64) -> OffsetDateTime {
        datetime!(2026-12-07 08:00 UTC) + Duration::minutes(m)
    }
    const LEAD: Duration = Duration::minutes(10);

    #[test]
    fn the_rule_the_time_and_once() {
        let s = occ(0, 100);
        assert_eq!(
            decide(false, &s, &[], LEAD, false, at(90)),
            Err(Refusal::Denied)
        );
        assert_eq!(
            decide(true, &s, &[], LEAD, false, at(80)),
            Err(Refusal::NotNow)
        );
        assert_eq!(
            decide(true, &s, &[], LEAD, false, at(100)),
            Err(Refusal::NotNow)
        );
        assert_eq!(decide(true, &s, &[], LEAD, false, at(90)), Ok(at(115)));
        assert_eq!(
            decide(true, &s, &[], LEAD, true, at(90)),
            Err(Refusal::Already)
        );
    }

    #[test]
    fn another_class_needs_the_nodes() {
        let s = occ(0, 100);
        // Pre-start of the next class (10 min lead) at 120: after 115, fine.
        assert_eq!(
            decide(true, &s, &[occ(130, 200)], LEAD, false, at(95)),
            Ok(at(115))
        );
        // At 110 (lead 10 → 100): before 115, refused.
        assert_eq!(
            decide(true, &s, &[occ(110, 200)], LEAD, false, at(95)),
            Err(Refusal::NodeNeeded)
        );
        // A class that ended before ours is no obstacle.
        assert_eq!(
            decide(true, &s, &[occ(0, 50)], LEAD, false, at(95)),
            Ok(at(115))
        );
    }

    proptest! {
        #[test]
        fn an_extension_never_overlaps_another_class(
            end in 30i64..300, now in 0i64..320, others in prop::collection::vec((0i64..400, 1i64..200), 0..5),
        ) {
            let s = occ(0, end);
            let others: Vec<Occurrence> = others.into_iter().map(|(a, len)| occ(a, a + len)).collect();
            if let Ok(until) = decide(true, &s, &others, LEAD, false, at(now)) {
                prop_assert_eq!(until, s.ends_at + EXTENSION);
                prop_assert!(at(now) < s.ends_at && s.ends_at - at(now) <= Duration::minutes(15));
                for o in &others {
                    prop_assert!(o.ends_at <= s.ends_at || o.starts_at - LEAD >= until);
                }
            }
        }
    }
}
