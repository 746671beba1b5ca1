//! Forecasts: how many days until a store fills up, from its recent trend.
//!
//! The trend is the Theil–Sen line through the (time, used bytes) samples:
//! the median of the slopes between every pair of samples, and the median
//! intercept. Unlike least squares it ignores a few odd samples (a big import
//! deleted the next hour, a missed reading), which is what a capacity
//! forecast wants. Pairs are O(n²), so the series is thinned evenly to at
//! most [`MAX_SAMPLES`] first.
//!
//! No forecast when there is too little to go on (fewer than
//! [`MIN_SAMPLES`] samples or a span under `min_span_secs`) or when the trend
//! is not growing: a flat or shrinking store never fills.

use serde::{Deserialize, Serialize};

use super::{DAY, Level, Point};
use crate::alerts::baseline::median;

/// Fewest samples for a trend.
pub const MIN_SAMPLES: usize = 3;
/// Samples used at most (thinned evenly beyond this).
pub const MAX_SAMPLES: usize = 200;
/// How far back "the recent trend" looks (a week: the lab's own cycle).
pub const TREND_WINDOW_SECS: i64 = 7 * DAY;

/// What the trend says about a store of a given capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Forecast {
    /// Too few samples, or over too short a time.
    Unknown,
    /// Flat or shrinking.
    NotGrowing,
    /// Full by the trend already (at `now`).
    Full,
    /// Days from `now` until the trend reaches the capacity.
    InDays { days: f64 },
}

/// Alert levels by days left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastRule {
    pub warning_days: f64,
    pub critical_days: f64,
    /// Shortest span of samples a trend may be drawn from.
    pub min_span_secs: i64,
}

/// Slope (per second) and intercept (at t = 0, relative to the first sample).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub origin: i64,
    pub slope: f64,
    pub intercept: f64,
}

impl Trend {
    pub fn at(&self, t: i64) -> f64 {
        #[allow(clippy::cast_precision_loss)] // seconds within centuries
        let dt = (t - self.origin) as f64;
        self.intercept + self.slope * dt
    }
}

fn thin(points: &[Point]) -> Vec<Point> {
    let mut v: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.value.is_finite())
        .collect();
    v.sort_by_key(|p| p.at);
    v.dedup_by_key(|p| p.at);
    if v.len() <= MAX_SAMPLES {
        return v;
    }
    let n = v.len();
    (0..MAX_SAMPLES)
        .map(|i| v[i * (n - 1) / (MAX_SAMPLES - 1)])
        .collect()
}

/// The Theil–Sen trend of `points`, `None` with fewer than [`MIN_SAMPLES`]
/// distinct times.
pub fn theil_sen(points: &[Point]) -> Option<Trend> {
    let v = thin(points);
    if v.len() < MIN_SAMPLES {
        return None;
    }
    let origin = v[0].at;
    let mut slopes = Vec::with_capacity(v.len() * (v.len() - 1) / 2);
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            #[allow(clippy::cast_precision_loss)]
            slopes.push((b.value - a.value) / (b.at - a.at) as f64);
        }
    }
    let slope = median(&slopes)?;
    #[allow(clippy::cast_precision_loss)]
    let residuals: Vec<f64> = v
        .iter()
        .map(|p| p.value - slope * (p.at - origin) as f64)
        .collect();
    Some(Trend {
        origin,
        slope,
        intercept: median(&residuals)?,
    })
}

/// Days until `used` reaches `capacity` by the trend of `points`, seen at `now`.
pub fn days_until_full(points: &[Point], capacity: f64, now: i64, min_span_secs: i64) -> Forecast {
    let span = match (
        points.iter().map(|p| p.at).min(),
        points.iter().map(|p| p.at).max(),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => return Forecast::Unknown,
    };
    if span < min_span_secs {
        return Forecast::Unknown;
    }
    let Some(trend) = theil_sen(points) else {
        return Forecast::Unknown;
    };
    let left = capacity - trend.at(now);
    if left <= 0.0 {
        return Forecast::Full;
    }
    if trend.slope <= 0.0 {
        return Forecast::NotGrowing;
    }
    #[allow(clippy::cast_precision_loss)]
    let days = left / trend.slope / DAY as f64;
    Forecast::InDays { days }
}

impl ForecastRule {
    pub fn level(&self, f: Forecast) -> Option<Level> {
        match f {
            Forecast::Unknown | Forecast::NotGrowing => None,
            Forecast::Full => Some(Level::Critical),
            Forecast::InDays { days } if days <= self.critical_days => Some(Level::Critical),
            Forecast::InDays { days } if days <= self.warning_days => Some(Level::Warning),
            Forecast::InDays { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_764_496_800;

    fn line(n: i64, step: i64, start: f64, per_day: f64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                at: T0 + i * step,
                value: start + per_day * (i * step) as f64 / DAY as f64,
            })
            .collect()
    }

    fn rule() -> ForecastRule {
        ForecastRule {
            warning_days: 14.0,
            critical_days: 3.0,
            min_span_secs: DAY,
        }
    }

    #[test]
    fn a_steady_growth_by_hand() {
        // 100 GB used, 10 GB a day, 500 GB store: at day 6, 160 used → 34 days.
        let p = line(7, DAY, 100.0, 10.0);
        let f = days_until_full(&p, 500.0, T0 + 6 * DAY, DAY);
        let Forecast::InDays { days } = f else {
            panic!("{f:?}")
        };
        assert!((days - 34.0).abs() < 1e-9, "{days}");
        assert_eq!(rule().level(f), None);
        let f = days_until_full(&p, 180.0, T0 + 6 * DAY, DAY); // 2 days
        assert_eq!(rule().level(f), Some(Level::Critical), "{f:?}");
        let f = days_until_full(&p, 260.0, T0 + 6 * DAY, DAY);
        assert_eq!(rule().level(f), Some(Level::Warning), "{f:?}");
    }

    #[test]
    fn outliers_do_not_bend_the_trend() {
        let mut p = line(20, DAY, 100.0, 10.0);
        p[5].value = 10_000.0; // a one-off spike
        p[12].value = 0.0; // a bad reading
        let t = theil_sen(&p).expect("trend");
        assert!((t.slope * DAY as f64 - 10.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn too_little_history_flat_and_full() {
        assert_eq!(days_until_full(&[], 1.0, T0, 0), Forecast::Unknown);
        assert_eq!(
            days_until_full(&line(2, DAY, 1.0, 1.0), 9.0, T0, 0),
            Forecast::Unknown
        );
        assert_eq!(
            days_until_full(&line(10, 60, 1.0, 1.0), 9.0, T0, DAY),
            Forecast::Unknown,
            "10 minutes are no trend for a day-scale forecast"
        );
        assert_eq!(
            days_until_full(&line(10, DAY, 5.0, 0.0), 9.0, T0, DAY),
            Forecast::NotGrowing
        );
        assert_eq!(
            days_until_full(&line(10, DAY, 5.0, -1.0), 9.0, T0, DAY),
            Forecast::NotGrowing
        );
        assert_eq!(
            days_until_full(&line(10, DAY, 9.5, 0.0), 9.0, T0, DAY),
            Forecast::Full
        );
        assert_eq!(rule().level(Forecast::Full), Some(Level::Critical));
        assert_eq!(rule().level(Forecast::NotGrowing), None);
    }

    #[test]
    fn long_series_are_thinned() {
        let p = line(5000, 60, 0.0, 1.0);
        assert_eq!(thin(&p).len(), MAX_SAMPLES);
        let t = theil_sen(&p).expect("trend");
        assert!((t.slope * DAY as f64 - 1.0).abs() < 1e-9);
    }

    proptest! {
        /// An exact line is recovered, and the forecast agrees with it.
        #[test]
        fn a_line_is_recovered(
            start in 0.0f64..1e9, per_day in 1e3f64..1e10, n in 3i64..60,
            headroom in 1e3f64..1e12,
        ) {
            let p = line(n, 3600, start, per_day);
            let now = T0 + (n - 1) * 3600;
            let used = p[p.len() - 1].value;
            let f = days_until_full(&p, used + headroom, now, 0);
            let Forecast::InDays { days } = f else { return Err(TestCaseError::fail(format!("{f:?}"))) };
            let expect = headroom / per_day;
            prop_assert!((days - expect).abs() <= 1e-6 * expect.max(1.0), "{days} vs {expect}");
        }

        /// More capacity never means fewer days (or a worse level).
        #[test]
        fn more_room_is_never_worse(
            values in proptest::collection::vec(0.0f64..1000.0, 3..30),
            cap in 0.0f64..2000.0, extra in 0.0f64..2000.0,
        ) {
            let p: Vec<Point> = values.iter().enumerate()
                .map(|(i, v)| Point { at: T0 + i as i64 * DAY, value: *v }).collect();
            let now = T0 + values.len() as i64 * DAY;
            let a = rule().level(days_until_full(&p, cap, now, DAY));
            let b = rule().level(days_until_full(&p, cap + extra, now, DAY));
            prop_assert!(b <= a);
        }
    }
}
