//! The end-of-term rules as pure functions of (courses, layers, holds, now):
//! which courses the loop archives, which layers it erases, and what a
//! student is told. Times are Unix seconds; nothing here reads a clock.
//!
//! Invariants (property-tested below):
//! - a layer of a course that is not archived (active) is never selected;
//! - a layer of a held course, or of a held student, is never selected;
//! - a layer is selected only once its course's retention is over, and from
//!   then on at every later instant (the rule never changes its mind while
//!   nothing else changes);
//! - every layer that is past retention and not held is selected.

use std::collections::HashSet;

use uuid::Uuid;

pub const DAY: i64 = 86_400;
/// How long before the end students are told (the desktop page's banner).
pub const NOTICE_LEAD_DAYS: i64 = 14;
/// The rule an erase record names.
pub const RULE_RETENTION: &str = "retention";

/// What the rules need of a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CourseTerm {
    pub id: Uuid,
    pub ends_at: Option<i64>,
    pub retention_days: i64,
    pub archived_at: Option<i64>,
}

impl CourseTerm {
    /// When the course ended: its archive, or its end date if that came
    /// first (an archive late by the loop's period does not lengthen the
    /// retention). `None` while the course is active.
    pub fn ended_at(&self) -> Option<i64> {
        let archived = self.archived_at?;
        Some(match self.ends_at {
            Some(end) => end.min(archived),
            None => archived,
        })
    }

    /// From when the course's layers may be erased (`None`: active course).
    pub fn erase_after(&self) -> Option<i64> {
        self.ended_at()
            .map(|end| end.saturating_add(self.retention_days.max(0).saturating_mul(DAY)))
    }

    /// Until when students may download their work: the erase instant, or
    /// (not archived yet) the planned one from the end date.
    pub fn download_until(&self) -> Option<i64> {
        self.erase_after().or_else(|| {
            self.ends_at
                .map(|end| end.saturating_add(self.retention_days.max(0).saturating_mul(DAY)))
        })
    }
}

/// A personal layer: a VM of a course, owned by a student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerRef {
    pub vm_id: Uuid,
    pub course_id: Uuid,
    pub owner_id: Uuid,
}

/// Admin holds against erasure.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    pub courses: HashSet<Uuid>,
    pub users: HashSet<Uuid>,
}

impl Holds {
    pub fn holds(&self, layer: &LayerRef) -> bool {
        self.courses.contains(&layer.course_id) || self.users.contains(&layer.owner_id)
    }
}

/// The courses the loop archives at `now`: an end date reached, not
/// archived yet.
pub fn to_archive(courses: &[CourseTerm], now: i64) -> Vec<Uuid> {
    courses
        .iter()
        .filter(|c| c.archived_at.is_none() && c.ends_at.is_some_and(|end| end <= now))
        .map(|c| c.id)
        .collect()
}

/// The layers the loop erases at `now`: of archived courses past their
/// retention, neither the course nor the owner held. A layer whose course
/// is not in `courses` is never selected (nothing is erased on a guess).
pub fn to_erase(
    courses: &[CourseTerm],
    layers: &[LayerRef],
    holds: &Holds,
    now: i64,
) -> Vec<LayerRef> {
    layers
        .iter()
        .filter(|l| !holds.holds(l))
        .filter(|l| {
            courses
                .iter()
                .find(|c| c.id == l.course_id)
                .and_then(CourseTerm::erase_after)
                .is_some_and(|after| now >= after)
        })
        .copied()
        .collect()
}

/// Whether a student of the course is told about its end at `now`: from
/// [`NOTICE_LEAD_DAYS`] before the end date (or once archived) until the
/// layers are erased.
pub fn notice_shown(course: &CourseTerm, now: i64) -> bool {
    let from = match (course.archived_at, course.ends_at) {
        (Some(_), _) => i64::MIN,
        (None, Some(end)) => end.saturating_sub(NOTICE_LEAD_DAYS * DAY),
        (None, None) => return false,
    };
    let until = course.download_until().unwrap_or(i64::MAX);
    now >= from && now < until
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn course(
        n: u8,
        ends_at: Option<i64>,
        retention_days: i64,
        archived_at: Option<i64>,
    ) -> CourseTerm {
        CourseTerm {
            id: id(n),
            ends_at,
            retention_days,
            archived_at,
        }
    }

    #[test]
    fn a_course_ends_at_its_archive_or_its_end_whichever_came_first() {
        assert_eq!(course(1, Some(100), 1, None).ended_at(), None);
        assert_eq!(course(1, Some(100), 1, Some(150)).ended_at(), Some(100));
        assert_eq!(course(1, Some(100), 1, Some(50)).ended_at(), Some(50));
        assert_eq!(course(1, None, 1, Some(50)).erase_after(), Some(50 + DAY));
        assert_eq!(
            course(1, Some(100), 2, None).download_until(),
            Some(100 + 2 * DAY)
        );
        assert_eq!(course(1, None, 2, None).download_until(), None);
    }

    #[test]
    fn the_loop_archives_at_the_end_date_once() {
        let cs = [
            course(1, Some(100), 0, None),
            course(2, Some(101), 0, None),
            course(3, Some(50), 0, Some(60)),
            course(4, None, 0, None),
        ];
        assert_eq!(to_archive(&cs, 100), vec![id(1)]);
        assert_eq!(to_archive(&cs, 99), Vec::<Uuid>::new());
    }

    #[test]
    fn erasure_waits_for_retention_and_spares_holds() {
        let cs = [course(1, Some(0), 3, Some(10))];
        let a = LayerRef {
            vm_id: id(10),
            course_id: id(1),
            owner_id: id(20),
        };
        let b = LayerRef {
            vm_id: id(11),
            course_id: id(1),
            owner_id: id(21),
        };
        let none = Holds::default();
        assert!(to_erase(&cs, &[a, b], &none, 3 * DAY - 1).is_empty());
        assert_eq!(to_erase(&cs, &[a, b], &none, 3 * DAY), vec![a, b]);
        let mut held = Holds::default();
        held.users.insert(id(21));
        assert_eq!(to_erase(&cs, &[a, b], &held, 3 * DAY), vec![a]);
        held.courses.insert(id(1));
        assert!(to_erase(&cs, &[a, b], &held, 3 * DAY).is_empty());
    }

    #[test]
    fn students_are_told_from_two_weeks_before_the_end_until_erasure() {
        let end = 100 * DAY;
        let c = course(1, Some(end), 30, None);
        assert!(!notice_shown(&c, end - 15 * DAY));
        assert!(notice_shown(&c, end - 14 * DAY));
        assert!(notice_shown(&c, end + DAY));
        let archived = course(1, Some(end), 30, Some(end));
        assert!(notice_shown(&archived, end + 29 * DAY));
        assert!(!notice_shown(&archived, end + 30 * DAY));
        assert!(!notice_shown(&course(1, None, 30, None), end));
        // Archived by hand long before its end date: told at once.
        assert!(notice_shown(&course(1, Some(end), 30, Some(10)), 20));
    }

    const T: i64 = 400 * DAY;

    fn arb_course(n: u8) -> impl Strategy<Value = CourseTerm> {
        (
            proptest::option::of(0..T),
            0i64..400,
            proptest::option::of(0..T),
        )
            .prop_map(move |(ends_at, retention_days, archived_at)| CourseTerm {
                id: id(n),
                ends_at,
                retention_days,
                archived_at,
            })
    }

    fn arb_world() -> impl Strategy<Value = (Vec<CourseTerm>, Vec<LayerRef>, Holds, i64)> {
        (
            proptest::collection::vec(0u8..6, 0..6),
            proptest::collection::vec((0u8..8, 0u8..8, 0u8..5), 0..30),
            proptest::collection::hash_set(0u8..8, 0..3),
            proptest::collection::hash_set(0u8..5, 0..3),
            0..2 * T,
        )
            .prop_flat_map(|(course_ids, layers, held_courses, held_users, now)| {
                let mut ids = course_ids;
                ids.sort_unstable();
                ids.dedup();
                let courses: Vec<_> = ids.into_iter().map(arb_course).collect();
                let layers: Vec<LayerRef> = layers
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, c, o))| LayerRef {
                        vm_id: Uuid::from_u128(1000 + i as u128),
                        course_id: id(c),
                        owner_id: id(100 + o),
                    })
                    .collect();
                let holds = Holds {
                    courses: held_courses.into_iter().map(id).collect(),
                    users: held_users.into_iter().map(|o| id(100 + o)).collect(),
                };
                (courses, Just(layers), Just(holds), Just(now))
            })
    }

    proptest! {
        #[test]
        fn nothing_of_an_active_or_held_course_or_a_held_student_is_selected(
            (courses, layers, holds, now) in arb_world()
        ) {
            for l in to_erase(&courses, &layers, &holds, now) {
                let c = courses.iter().find(|c| c.id == l.course_id);
                prop_assert!(c.is_some(), "a layer of an unknown course");
                let c = c.unwrap_or_else(|| unreachable!());
                prop_assert!(c.archived_at.is_some(), "a layer of an active course");
                prop_assert!(!holds.courses.contains(&l.course_id), "a held course");
                prop_assert!(!holds.users.contains(&l.owner_id), "a held student");
                let after = c.erase_after().unwrap_or(i64::MAX);
                prop_assert!(now >= after, "erased before its retention ended");
                prop_assert!(after >= c.ended_at().unwrap_or(i64::MAX));
            }
        }

        #[test]
        fn every_layer_past_retention_and_not_held_is_selected_and_stays_so(
            (courses, layers, holds, now) in arb_world(), later in 0..T
        ) {
            let chosen: HashSet<LayerRef> = to_erase(&courses, &layers, &holds, now).into_iter().collect();
            for l in &layers {
                let due = courses.iter().find(|c| c.id == l.course_id)
                    .and_then(CourseTerm::erase_after)
                    .is_some_and(|after| now >= after);
                prop_assert_eq!(chosen.contains(l), due && !holds.holds(l));
            }
            let then: HashSet<LayerRef> = to_erase(&courses, &layers, &holds, now + later).into_iter().collect();
            prop_assert!(chosen.is_subset(&then), "a later pass forgot a layer");
        }

        #[test]
        fn archiving_picks_exactly_the_unarchived_courses_whose_end_passed(
            (courses, _layers, _holds, now) in arb_world()
        ) {
            let picked = to_archive(&courses, now);
            for c in &courses {
                let due = c.archived_at.is_none() && c.ends_at.is_some_and(|e| e <= now);
                prop_assert_eq!(picked.contains(&c.id), due);
            }
        }

        #[test]
        fn an_archived_course_tells_its_students_until_the_erasure_and_no_longer(
            c in arb_course(1), now in 0..2 * T
        ) {
            if let Some(after) = c.erase_after() {
                prop_assert_eq!(notice_shown(&c, now), now < after);
            }
        }
    }
}
