//! What `/metrics` exports of the service levels, computed from the same
//! records and definitions as the SLO page (one source of truth):
//!
//! - VM start outcomes: a counter of the start *attempts* in
//!   `slo_vm_starts` by outcome (`ok` / `failed`; a failure that is the
//!   user's own doing is no attempt — [`super::compute::counts_as_attempt`]),
//!   and a histogram of the time from the request to `running` of the
//!   successful ones. The records are never deleted, so both only grow:
//!   Prometheus counters, `rate()`/`increase()` work on them.
//! - SLO burn: each objective's burn rate over the windows of the
//!   multi-window burn-rate method ([`BURN_WINDOWS`]), computed exactly as
//!   the SLO page's and the built-in alert's (bad fraction / allowed bad),
//!   and the target in force. A window without events exports no sample
//!   (an absent series never fires an alert).
//!
//! Pure: the SQL aggregates are turned into figures here, so the bucket
//! edges and the cumulative counts are unit-tested.

use std::fmt::Write;

use super::compute::{Indicator, MINUTE_MS, counts_as_attempt};

/// The upper bounds of the start-duration histogram, seconds: a tiny guest
/// under TCG runs in 5–10 s, a desktop image under TCG in about a minute;
/// 120 s is the default p95 target.
pub const START_BUCKETS_SECONDS: [f64; 10] =
    [5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 90.0, 120.0, 300.0, 600.0];

/// The windows of the burn rates exported: the short and long windows of
/// the SRE workbook's multi-window burn-rate alerts (5 min confirms 1 h at
/// 14.4×, 30 min confirms 6 h at 6×).
pub const BURN_WINDOWS: [(&str, i64); 4] = [
    ("5m", 5 * MINUTE_MS),
    ("30m", 30 * MINUTE_MS),
    ("1h", 60 * MINUTE_MS),
    ("6h", 360 * MINUTE_MS),
];

/// The longest of [`BURN_WINDOWS`].
pub const LONGEST_BURN_WINDOW_MS: i64 = 360 * MINUTE_MS;

/// The SQL expression (over a column `d`, milliseconds) giving the index
/// of the histogram bucket a duration falls in: `i` for the first bound
/// `d` does not exceed, `START_BUCKETS_SECONDS.len()` above them all.
/// Built from the constant, never from input.
pub fn bucket_case_sql() -> String {
    let mut s = String::from("CASE");
    for (i, b) in START_BUCKETS_SECONDS.iter().enumerate() {
        let _ = write!(s, " WHEN d <= {} THEN {i}", bound_ms(*b));
    }
    let _ = write!(s, " ELSE {} END", START_BUCKETS_SECONDS.len());
    s
}

fn bound_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The bucket index of a duration (what [`bucket_case_sql`] computes).
pub fn bucket_of(d_ms: i64) -> usize {
    START_BUCKETS_SECONDS
        .iter()
        .position(|b| d_ms <= bound_ms(*b))
        .unwrap_or(START_BUCKETS_SECONDS.len())
}

/// Start rows counted by outcome and failure kind (`GROUP BY`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeCount {
    pub ok: bool,
    pub error_code: Option<String>,
    pub count: i64,
}

/// Successful starts per bucket index (`GROUP BY` [`bucket_case_sql`]):
/// how many, and their summed durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketCount {
    pub bucket: i64,
    pub count: i64,
    pub sum_ms: i64,
}

/// A Prometheus histogram: cumulative counts per upper bound (`+Inf` is
/// `count`), and the sum of the observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// All start attempts ever recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartTotals {
    pub ok: u64,
    pub failed: u64,
    pub duration: Histogram,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The totals from the grouped rows.
pub fn start_totals(outcomes: &[OutcomeCount], buckets: &[BucketCount]) -> StartTotals {
    let mut t = StartTotals::default();
    for o in outcomes
        .iter()
        .filter(|o| counts_as_attempt(o.ok, o.error_code.as_deref()))
    {
        if o.ok {
            t.ok += count(o.count);
        } else {
            t.failed += count(o.count);
        }
    }
    let mut per = vec![0u64; START_BUCKETS_SECONDS.len() + 1];
    let mut sum_ms = 0i64;
    for b in buckets {
        let i = usize::try_from(b.bucket)
            .unwrap_or(0)
            .min(START_BUCKETS_SECONDS.len());
        per[i] += count(b.count);
        sum_ms = sum_ms.saturating_add(b.sum_ms.max(0));
    }
    let mut cumulative = 0;
    t.duration.buckets = START_BUCKETS_SECONDS
        .iter()
        .zip(&per)
        .map(|(&le, &n)| {
            cumulative += n;
            (le, cumulative)
        })
        .collect();
    t.duration.count = per.iter().sum();
    t.duration.sum_seconds = sum_ms as f64 / 1000.0;
    t
}

/// One objective's burn rate over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowBurn {
    pub window: &'static str,
    pub indicator: Indicator,
    pub rate: f64,
}

/// Everything `/metrics` exports of the service levels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub starts: StartTotals,
    /// Every indicator's target in force.
    pub targets: Vec<(Indicator, f64)>,
    /// Only the windows with events.
    pub burn: Vec<WindowBurn>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oc(ok: bool, code: Option<&str>, count: i64) -> OutcomeCount {
        OutcomeCount {
            ok,
            error_code: code.map(str::to_owned),
            count,
        }
    }

    #[test]
    fn attempts_by_outcome_leave_out_what_the_user_caused() {
        let t = start_totals(
            &[
                oc(true, None, 7),
                oc(false, Some("node_unavailable"), 2),
                oc(false, None, 1),
                // Starting a VM while it shuts down: no attempt.
                oc(false, Some("vm_stopping"), 5),
            ],
            &[],
        );
        assert_eq!((t.ok, t.failed), (7, 3));
        assert_eq!(t.duration.count, 0);
        assert!(t.duration.buckets.iter().all(|&(_, n)| n == 0));
    }

    #[test]
    fn the_histogram_is_cumulative_with_its_sum() {
        // 3 s, 4 s (bucket 5 s), 12 s (15 s), 100 s (120 s), 900 s (+Inf).
        let durations = [3_000, 4_000, 12_000, 100_000, 900_000];
        let mut grouped: Vec<BucketCount> = Vec::new();
        for d in durations {
            let b = bucket_of(d) as i64;
            match grouped.iter_mut().find(|g| g.bucket == b) {
                Some(g) => {
                    g.count += 1;
                    g.sum_ms += d;
                }
                None => grouped.push(BucketCount {
                    bucket: b,
                    count: 1,
                    sum_ms: d,
                }),
            }
        }
        let h = start_totals(&[], &grouped).duration;
        let le = |x: f64| h.buckets.iter().find(|b| b.0 == x).map(|b| b.1);
        assert_eq!(le(5.0), Some(2));
        assert_eq!(le(10.0), Some(2));
        assert_eq!(le(15.0), Some(3));
        assert_eq!(le(90.0), Some(3));
        assert_eq!(le(120.0), Some(4));
        assert_eq!(le(600.0), Some(4));
        assert_eq!(h.count, 5);
        assert!((h.sum_seconds - 1019.0).abs() < 1e-9);
    }

    #[test]
    fn bucket_edges_are_inclusive() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(5_000), 0);
        assert_eq!(bucket_of(5_001), 1);
        assert_eq!(bucket_of(600_000), START_BUCKETS_SECONDS.len() - 1);
        assert_eq!(bucket_of(600_001), START_BUCKETS_SECONDS.len());
        let sql = bucket_case_sql();
        assert!(sql.starts_with("CASE WHEN d <= 5000 THEN 0 WHEN d <= 10000 THEN 1"));
        assert!(
            sql.ends_with("WHEN d <= 600000 THEN 9 ELSE 10 END"),
            "{sql}"
        );
    }

    proptest! {
        /// Whatever the durations: the buckets never decrease, the last
        /// bound holds all but those above it, and the count is all.
        #[test]
        fn buckets_are_monotone_and_complete(ds in proptest::collection::vec(0i64..2_000_000, 0..60)) {
            let grouped: Vec<BucketCount> = ds
                .iter()
                .map(|&d| BucketCount { bucket: bucket_of(d) as i64, count: 1, sum_ms: d })
                .collect();
            let h = start_totals(&[], &grouped).duration;
            prop_assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
            prop_assert_eq!(h.count, ds.len() as u64);
            let within = ds.iter().filter(|&&d| d <= 600_000).count() as u64;
            prop_assert_eq!(h.buckets.last().map(|b| b.1), Some(within));
            for &(le, n) in &h.buckets {
                let want = ds.iter().filter(|&&d| d as f64 <= le * 1000.0).count() as u64;
                prop_assert_eq!(n, want);
            }
        }
    }
}
