//! Baselines: what a value usually is at this time of the week.
//!
//! A lab's load follows its timetable, so "usual" is the same hour of the
//! same weekday over the past `weeks` weeks (local time, by a fixed UTC
//! offset — a DST change shifts the slot by an hour for the weeks that span
//! it, which only widens the spread). Each past week contributes the median
//! of its samples in that hour, and the baseline is the median of those and
//! their MAD (median absolute deviation): robust, so one bad week (an exam,
//! an outage) does not move it.
//!
//! Too little history: with fewer than `min_weeks` weeks that have samples in
//! the slot there is no baseline (`None`) and no deviation alert — a new
//! installation alerts by thresholds only.
//!
//! A deviation is measured in robust standard deviations,
//! `(value - median) / max(1.4826·MAD, min_spread)`; the floor `min_spread`
//! keeps a perfectly steady history (MAD 0) from turning every small change
//! into an anomaly.

use serde::{Deserialize, Serialize};

use super::{HOUR, Level, Point, WEEK};

/// Which past samples make a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// Past weeks looked at.
    pub weeks: u32,
    /// Fewest weeks with data for a baseline to exist.
    pub min_weeks: u32,
    /// The site's offset from UTC in seconds, so "the same hour" is local.
    #[serde(default)]
    pub utc_offset_secs: i64,
}

impl Default for BaselineSpec {
    fn default() -> Self {
        BaselineSpec {
            weeks: 4,
            min_weeks: 3,
            utc_offset_secs: 0,
        }
    }
}

/// Robust centre and spread of the past values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub median: f64,
    pub mad: f64,
    /// Weeks that contributed.
    pub weeks: u32,
}

/// Which side of the baseline is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Above,
    Below,
    Both,
}

/// Levels by deviation: `k_*` are robust standard deviations from the median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviationRule {
    pub side: Side,
    pub k_warning: f64,
    pub k_critical: f64,
    /// Smallest spread assumed, in the series' unit.
    pub min_spread: f64,
    #[serde(default)]
    pub spec: BaselineSpec,
}

/// The median of `values` (NaNs are left out); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median absolute deviation from the median.
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    median(&dev)
}

/// Start of the (local) hour `t` falls in, in Unix seconds.
fn hour_start(t: i64, utc_offset_secs: i64) -> i64 {
    t - (t + utc_offset_secs).rem_euclid(HOUR)
}

/// The baseline for the hour `now` falls in, from `history` (any order; only
/// points in the same hour slot of the past `spec.weeks` weeks count).
pub fn baseline(history: &[Point], now: i64, spec: &BaselineSpec) -> Option<Baseline> {
    let slot = hour_start(now, spec.utc_offset_secs);
    let mut per_week = Vec::new();
    for k in 1..=i64::from(spec.weeks) {
        let from = slot - k * WEEK;
        let in_slot: Vec<f64> = history
            .iter()
            .filter(|p| p.at >= from && p.at < from + HOUR)
            .map(|p| p.value)
            .collect();
        if let Some(m) = median(&in_slot) {
            per_week.push(m);
        }
    }
    let weeks = u32::try_from(per_week.len()).unwrap_or(u32::MAX);
    if weeks == 0 || weeks < spec.min_weeks {
        return None;
    }
    Some(Baseline {
        median: median(&per_week)?,
        mad: mad(&per_week)?,
        weeks,
    })
}

/// MAD × 1.4826 estimates the standard deviation of normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Signed distance of `value` from the baseline in robust standard deviations.
pub fn score(value: f64, b: &Baseline, min_spread: f64) -> f64 {
    let spread = (b.mad * MAD_TO_SIGMA)
        .max(min_spread)
        .max(f64::MIN_POSITIVE);
    (value - b.median) / spread
}

impl DeviationRule {
    /// The level of `value` against `b`: warning past `k_warning`, critical
    /// past `k_critical`, on the bad side only.
    pub fn level(&self, value: f64, b: &Baseline) -> Option<Level> {
        let s = score(value, b, self.min_spread);
        let d = match self.side {
            Side::Above => s,
            Side::Below => -s,
            Side::Both => s.abs(),
        };
        if d >= self.k_critical {
            Some(Level::Critical)
        } else if d >= self.k_warning {
            Some(Level::Warning)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Monday 2026-11-30 10:00 UTC.
    const MON_10: i64 = 1_764_496_800;

    fn weekly(values: &[f64], at: i64) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                at: at - (i as i64 + 1) * WEEK + 600,
                value: *v,
            })
            .collect()
    }

    #[test]
    fn median_and_mad_by_hand() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        // |1-2|,|2-2|,|3-2|,|100-2| → 1,0,1,98 → median 1
        assert_eq!(mad(&[1.0, 2.0, 3.0, 100.0]), Some(1.0));
    }

    #[test]
    fn same_hour_same_weekday_only() {
        let mut h = weekly(&[40.0, 42.0, 38.0, 41.0], MON_10);
        // Noise at other hours and on other days does not count.
        h.push(Point {
            at: MON_10 - WEEK + 2 * HOUR,
            value: 99.0,
        });
        h.push(Point {
            at: MON_10 - 24 * HOUR,
            value: 99.0,
        });
        // Nor does this week's own slot (it is "now").
        h.push(Point {
            at: MON_10 + 60,
            value: 99.0,
        });
        let b = baseline(&h, MON_10 + 1800, &BaselineSpec::default()).expect("baseline");
        assert_eq!(b.weeks, 4);
        assert_eq!(b.median, 40.5);
        assert_eq!(b.mad, 1.0);
    }

    #[test]
    fn too_little_history_means_no_baseline() {
        let spec = BaselineSpec::default();
        assert_eq!(baseline(&[], MON_10, &spec), None);
        assert_eq!(
            baseline(&weekly(&[40.0, 41.0], MON_10), MON_10, &spec),
            None
        );
        assert!(baseline(&weekly(&[40.0, 41.0, 39.0], MON_10), MON_10, &spec).is_some());
    }

    #[test]
    fn the_local_hour_is_the_slot() {
        // With a half-hour offset (e.g. UTC+5:30) the local hour that holds
        // 10:01 UTC starts at 09:30 UTC, so samples at 09:45 are in the slot.
        let spec = BaselineSpec {
            utc_offset_secs: 1800,
            ..BaselineSpec::default()
        };
        let h: Vec<Point> = (1..=3)
            .map(|k| Point {
                at: MON_10 - k * WEEK - 900,
                value: 5.0,
            })
            .collect();
        assert!(baseline(&h, MON_10 + 60, &spec).is_some());
        assert!(baseline(&h, MON_10 + 60, &BaselineSpec::default()).is_none());
    }

    #[test]
    fn deviation_levels_and_the_spread_floor() {
        let b = Baseline {
            median: 40.0,
            mad: 2.0,
            weeks: 4,
        };
        let r = DeviationRule {
            side: Side::Above,
            k_warning: 3.0,
            k_critical: 5.0,
            min_spread: 1.0,
            spec: BaselineSpec::default(),
        };
        // sigma = 2.9652
        assert_eq!(r.level(45.0, &b), None);
        assert_eq!(r.level(49.0, &b), Some(Level::Warning));
        assert_eq!(r.level(55.0, &b), Some(Level::Critical));
        assert_eq!(r.level(10.0, &b), None, "below is fine for an Above rule");
        let steady = Baseline {
            median: 40.0,
            mad: 0.0,
            weeks: 4,
        };
        assert_eq!(
            r.level(41.0, &steady),
            None,
            "the floor keeps 1 unit normal"
        );
        let both = DeviationRule {
            side: Side::Both,
            ..r
        };
        assert_eq!(both.level(10.0, &b), Some(Level::Critical));
    }

    proptest! {
        /// One wild week out of five never moves the baseline outside the
        /// range of the other four (robustness of the median).
        #[test]
        fn one_outlier_week_does_not_move_it(
            normal in proptest::collection::vec(0.0f64..100.0, 4),
            wild in -1e9f64..1e9,
        ) {
            let mut v = normal.clone();
            v.push(wild);
            let spec = BaselineSpec { weeks: 5, min_weeks: 3, utc_offset_secs: 0 };
            let b = baseline(&weekly(&v, MON_10), MON_10, &spec).expect("baseline");
            let lo = normal.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = normal.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(b.median >= lo && b.median <= hi);
        }

        /// The level never falls as the value moves further to the bad side.
        #[test]
        fn level_is_monotonic(
            median in -100.0f64..100.0, mad in 0.0f64..10.0,
            a in -200.0f64..200.0, d in 0.0f64..200.0,
        ) {
            let b = Baseline { median, mad, weeks: 4 };
            let r = DeviationRule {
                side: Side::Above, k_warning: 3.0, k_critical: 6.0,
                min_spread: 0.5, spec: BaselineSpec::default(),
            };
            prop_assert!(r.level(a, &b) <= r.level(a + d, &b));
        }
    }
}
