//! The end-of-term rules as pure functions of (courses, layers, holds, now):
//! which courses the loop archives, which layers it erases, what a student
//! is told, and which students the loop notifies (once per course and end
//! date). Times are Unix seconds; nothing here reads a clock.
//!
//! Invariants (property-tested below):
//! - a layer of a course that is not archived (active) is never selected;
//! - a layer of a held course, or of a held student, is never selected;
//! - a layer is selected only once its course's retention is over, and from
//!   then on at every later instant (the rule never changes its mind while
//!   nothing else changes);
//! - every layer that is past retention and not held is selected;
//! - a student is notified of a course's end only inside its notice window
//!   (from [`NOTICE_LEAD_DAYS`] before the end date until it, not archived),
//!   and once per end date: never again for a (student, course, end) told,
//!   again when the end date moves.

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
        self.holds_student(layer.course_id, layer.owner_id)
    }

    /// Whether a student's work in a course is held (the course or them).
    pub fn holds_student(&self, course: Uuid, user: Uuid) -> bool {
        self.courses.contains(&course) || self.users.contains(&user)
    }
}

/// A student of a course with work there (a VM of theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Student {
    pub course_id: Uuid,
    pub user_id: Uuid,
}

/// A notice the loop queues: the course ends at `ends_at`, the work can be
/// downloaded until `download_until` (`None`: held against erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoticeDue {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub ends_at: i64,
    pub download_until: Option<i64>,
}

/// Who has been told, of which end: (student, course, end date).
pub type Told = HashSet<(Uuid, Uuid, i64)>;

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

/// Whether a course is in its notice window at `now`: it has an end date,
/// is not archived, and the end is at most [`NOTICE_LEAD_DAYS`] away.
pub fn in_notice_window(course: &CourseTerm, now: i64) -> bool {
    course.archived_at.is_none()
        && course
            .ends_at
            .is_some_and(|end| now >= end.saturating_sub(NOTICE_LEAD_DAYS * DAY) && now < end)
}

/// The students the loop notifies at `now` (the desk's bell and e-mail):
/// each student of a course in its notice window who was not told of this
/// end date yet. A student of a course not in `courses` is never selected.
pub fn notices_due(
    courses: &[CourseTerm],
    students: &[Student],
    holds: &Holds,
    told: &Told,
    now: i64,
) -> Vec<NoticeDue> {
    let mut seen = HashSet::new();
    students
        .iter()
        .filter_map(|s| {
            let c = courses.iter().find(|c| c.id == s.course_id)?;
            let end = c.ends_at?;
            if !in_notice_window(c, now)
                || told.contains(&(s.user_id, s.course_id, end))
                || !seen.insert(*s)
            {
                return None;
            }
            Some(NoticeDue {
                course_id: s.course_id,
                user_id: s.user_id,
                ends_at: end,
                download_until: if holds.holds_student(s.course_id, s.user_id) {
                    None
                } else {
                    c.download_until()
                },
            })
        })
        .collect()
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

    #[test]
    fn students_are_notified_once_per_end_date_inside_the_window() {
        let end = 100 * DAY;
        let c = course(1, Some(end), 30, None);
        let (a, b) = (id(20), id(21));
        let students = [
            Student {
                course_id: id(1),
                user_id: a,
            },
            Student {
                course_id: id(1),
                user_id: b,
            },
            // A student of a course nobody knows: never selected.
            Student {
                course_id: id(9),
                user_id: a,
            },
        ];
        let mut holds = Holds::default();
        holds.users.insert(b);
        let mut told = Told::new();
        let due =
            |cs: &[CourseTerm], told: &Told, now| notices_due(cs, &students, &holds, told, now);
        assert!(due(&[c], &told, end - 14 * DAY - 1).is_empty(), "too early");
        let got = due(&[c], &told, end - 14 * DAY);
        assert_eq!(
            got,
            vec![
                NoticeDue {
                    course_id: id(1),
                    user_id: a,
                    ends_at: end,
                    download_until: Some(end + 30 * DAY)
                },
                NoticeDue {
                    course_id: id(1),
                    user_id: b,
                    ends_at: end,
                    download_until: None
                },
            ]
        );
        for n in &got {
            told.insert((n.user_id, n.course_id, n.ends_at));
        }
        assert!(due(&[c], &told, end - DAY).is_empty(), "told once");
        // The teacher moves the end a week later: a new notice for the new date.
        let moved = course(1, Some(end + 7 * DAY), 30, None);
        assert_eq!(due(&[moved], &told, end - DAY).len(), 2);
        // At the end the loop archives; nothing more is sent.
        assert!(due(&[c], &Told::new(), end).is_empty());
        assert!(
            due(
                &[course(1, Some(end), 30, Some(end - DAY))],
                &Told::new(),
                end - DAY
            )
            .is_empty()
        );
        assert!(due(&[course(1, None, 30, None)], &Told::new(), end).is_empty());
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
        fn notices_go_once_inside_the_window_to_every_student_not_told(
            (courses, layers, holds, now) in arb_world(), later in 0..T, told_some in proptest::collection::vec(any::<bool>(), 30)
        ) {
            let students: Vec<Student> = layers.iter()
                .map(|l| Student { course_id: l.course_id, user_id: l.owner_id })
                .collect();
            let mut told = Told::new();
            for (s, yes) in students.iter().zip(&told_some) {
                let end = courses.iter().find(|c| c.id == s.course_id).and_then(|c| c.ends_at);
                if let (true, Some(end)) = (*yes, end) {
                    told.insert((s.user_id, s.course_id, end));
                }
            }
            let due = notices_due(&courses, &students, &holds, &told, now);
            let mut once = HashSet::new();
            for n in &due {
                prop_assert!(once.insert((n.user_id, n.course_id)), "one notice per student and course");
                let c = courses.iter().find(|c| c.id == n.course_id);
                prop_assert!(c.is_some(), "a notice of an unknown course");
                let c = c.unwrap_or_else(|| unreachable!());
                prop_assert!(in_notice_window(c, now) && c.archived_at.is_none());
                prop_assert_eq!(c.ends_at, Some(n.ends_at));
                prop_assert!(now < n.ends_at && now >= n.ends_at - NOTICE_LEAD_DAYS * DAY);
                prop_assert!(!told.contains(&(n.user_id, n.course_id, n.ends_at)), "told twice");
                // What the bell says is what the desktop page says.
                prop_assert!(notice_shown(c, now));
                let held = holds.holds_student(n.course_id, n.user_id);
                prop_assert_eq!(n.download_until, if held { None } else { c.download_until() });
                let student = Student { course_id: n.course_id, user_id: n.user_id };
                prop_assert!(students.contains(&student), "a notice for someone not enrolled");
            }
            // Everyone due and not told is selected.
            for s in &students {
                let Some(c) = courses.iter().find(|c| c.id == s.course_id) else { continue };
                let expect = in_notice_window(c, now)
                    && c.ends_at.is_some_and(|end| !told.contains(&(s.user_id, s.course_id, end)));
                prop_assert_eq!(due.iter().any(|n| n.user_id == s.user_id && n.course_id == s.course_id), expect);
            }
            // Once recorded, no later pass selects them again (a restart, the next tick).
            for n in &due {
                told.insert((n.user_id, n.course_id, n.ends_at));
            }
            prop_assert!(notices_due(&courses, &students, &holds, &told, now).is_empty());
            for n in notices_due(&courses, &students, &holds, &told, now + later) {
                prop_assert!(
                    !due.iter().any(|d| (d.user_id, d.course_id, d.ends_at) == (n.user_id, n.course_id, n.ends_at)),
                    "told again later"
                );
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
