//! Class provisioning time, an indicator of its own: how long from a class
//! session's pre-start (the class-time loop queuing the course's stopped
//! VMs, [`crate::classtime::class`]) until the last of those VMs was usable
//! (its start returned with the VM running). Recorded per occurrence by
//! [`super::record::class_prestart`] and [`super::record::class_vm_started`];
//! computed here without I/O or a clock, over the loaded rows.
//!
//! Definitions:
//! - a pre-start is **complete** when every VM it queued is usable; its
//!   provisioning time is then the last VM's usable time − the pre-start
//!   (never below 0); an incomplete one has none (a VM failed to start, or
//!   never got its turn before the session ended);
//! - **ready by start**: complete, with the last VM usable no later than the
//!   session's start (what the pre-start lead is for);
//! - p50/p95 (nearest rank, as the other indicators) and the maximum are
//!   over the complete pre-starts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The most pre-starts listed one by one (the newest); the summary counts all.
pub const MAX_LISTED: usize = 100;

/// One VM a pre-start queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrestartVm {
    pub ready_ms: Option<i64>,
    pub failed_ms: Option<i64>,
}

/// One recorded pre-start with its VMs.
#[derive(Debug, Clone, PartialEq)]
pub struct PrestartRow {
    pub course_id: Uuid,
    pub session_start_ms: i64,
    pub prestart_ms: i64,
    pub vms: Vec<PrestartVm>,
}

/// One pre-started session as the SLO page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassProvisioning {
    pub course_id: Uuid,
    /// RFC 3339.
    pub session_start: String,
    pub vms: u64,
    pub ready: u64,
    pub failed: u64,
    /// Neither usable nor failed (waiting, or dropped at the session's end).
    pub pending: u64,
    /// Pre-start to the last VM usable; `None` unless complete.
    pub seconds: Option<f64>,
    pub ready_by_start: bool,
}

/// The indicator over a range (also stored in a report's figures).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvisioningFigures {
    pub sessions: u64,
    pub complete: u64,
    pub ready_by_start: u64,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
    /// The newest first, at most [`MAX_LISTED`].
    pub per_session: Vec<ClassProvisioning>,
}

fn rfc3339(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    crate::db::format_time(t)
}

/// One pre-start's figures.
pub fn session(row: &PrestartRow) -> ClassProvisioning {
    let ready: Vec<i64> = row.vms.iter().filter_map(|v| v.ready_ms).collect();
    let failed = row
        .vms
        .iter()
        .filter(|v| v.ready_ms.is_none() && v.failed_ms.is_some())
        .count();
    let vms = row.vms.len();
    let complete = vms > 0 && ready.len() == vms;
    let last = ready.iter().copied().max();
    let seconds = last
        .filter(|_| complete)
        .map(|t| (t - row.prestart_ms).max(0) as f64 / 1000.0);
    ClassProvisioning {
        course_id: row.course_id,
        session_start: rfc3339(row.session_start_ms),
        vms: vms as u64,
        ready: ready.len() as u64,
        failed: failed as u64,
        pending: (vms - ready.len() - failed) as u64,
        seconds,
        ready_by_start: complete && last.is_some_and(|t| t <= row.session_start_ms),
    }
}

/// The indicator over `rows` (any order).
pub fn figures(rows: &[PrestartRow]) -> ProvisioningFigures {
    let mut sorted: Vec<&PrestartRow> = rows.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse((r.session_start_ms, r.prestart_ms)));
    let all: Vec<ClassProvisioning> = sorted.into_iter().map(session).collect();
    let mut times: Vec<f64> = all.iter().filter_map(|s| s.seconds).collect();
    ProvisioningFigures {
        sessions: all.len() as u64,
        complete: times.len() as u64,
        ready_by_start: all.iter().filter(|s| s.ready_by_start).count() as u64,
        p50_seconds: crate::quantile::percentile(&mut times, 50.0),
        p95_seconds: crate::quantile::percentile(&mut times, 95.0),
        max_seconds: times.iter().copied().reduce(f64::max),
        per_session: all.into_iter().take(MAX_LISTED).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1000;

    fn ready(t: i64) -> PrestartVm {
        PrestartVm {
            ready_ms: Some(t),
            failed_ms: None,
        }
    }

    fn row(start: i64, prestart: i64, vms: Vec<PrestartVm>) -> PrestartRow {
        PrestartRow {
            course_id: Uuid::from_u128(7),
            session_start_ms: start,
            prestart_ms: prestart,
            vms,
        }
    }

    #[test]
    fn by_hand() {
        // Pre-start 600 s before the session; the VMs usable after 40, 95
        // and 130 s: 130 s, ready by the start.
        let on_time = row(
            1_000_000 * S,
            1_000_000 * S - 600 * S,
            vec![ready(999_440 * S), ready(999_495 * S), ready(999_530 * S)],
        );
        // The last VM usable 20 s after the session began: 620 s, late.
        let late = row(
            2_000_000 * S,
            2_000_000 * S - 600 * S,
            vec![ready(2_000_000 * S - 500 * S), ready(2_000_020 * S)],
        );
        // One VM failed, one never got its turn: incomplete, no time.
        let broken = row(
            3_000_000 * S,
            3_000_000 * S - 600 * S,
            vec![
                ready(3_000_000 * S - 590 * S),
                PrestartVm {
                    ready_ms: None,
                    failed_ms: Some(3_000_000 * S - 580 * S),
                },
                PrestartVm {
                    ready_ms: None,
                    failed_ms: None,
                },
            ],
        );
        let f = figures(&[on_time.clone(), broken.clone(), late.clone()]);
        assert_eq!((f.sessions, f.complete, f.ready_by_start), (3, 2, 1));
        assert_eq!(f.p50_seconds, Some(130.0));
        assert_eq!(f.p95_seconds, Some(620.0));
        assert_eq!(f.max_seconds, Some(620.0));
        // The newest first.
        let b = &f.per_session[0];
        assert_eq!(
            (
                b.vms,
                b.ready,
                b.failed,
                b.pending,
                b.seconds,
                b.ready_by_start
            ),
            (3, 1, 1, 1, None, false)
        );
        assert_eq!(f.per_session[1].seconds, Some(620.0));
        assert!(!f.per_session[1].ready_by_start);
        assert_eq!(f.per_session[2].seconds, Some(130.0));
        assert!(f.per_session[2].ready_by_start);
        assert_eq!(f.per_session[2].session_start, "1970-01-12T13:46:40Z");
        // Nothing recorded: no figures.
        assert_eq!(figures(&[]), ProvisioningFigures::default());
    }

    proptest! {
        /// A complete pre-start's time is the last VM's, never negative;
        /// ready by start only when complete; counts add up.
        #[test]
        fn times_and_counts_are_consistent(
            offsets in proptest::collection::vec(proptest::option::of(-100i64..2_000), 1..12),
            lead in 0i64..1_000,
        ) {
            let prestart = 10_000 * S;
            let start = prestart + lead * S;
            let vms: Vec<PrestartVm> = offsets
                .iter()
                .map(|o| PrestartVm { ready_ms: o.map(|o| prestart + o * S), failed_ms: None })
                .collect();
            let s = session(&row(start, prestart, vms));
            prop_assert_eq!(s.ready + s.failed + s.pending, s.vms);
            let complete = offsets.iter().all(Option::is_some);
            prop_assert_eq!(s.seconds.is_some(), complete);
            if let Some(secs) = s.seconds {
                let last = offsets.iter().flatten().copied().max().unwrap_or(0);
                prop_assert_eq!(secs, last.max(0) as f64);
                prop_assert_eq!(s.ready_by_start, last <= lead);
            } else {
                prop_assert!(!s.ready_by_start);
            }
        }
    }
}
