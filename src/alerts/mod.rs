//! Alerts at levels: the pure engine that turns measurements into alerts.
//!
//! Everything here is a pure function of its inputs, time included (Unix
//! seconds passed in by the caller), so a loop can drive it from a clock the
//! tests control and every rule is unit- and property-tested without a server:
//!
//! - [`rules`]: the rule set (node CPU/memory, template-store and
//!   layer-storage capacity, node failures, start failures, console errors,
//!   SLO burn) with default thresholds, in a serde form for settings, and
//!   [`rules::Rule::evaluate`], which gives a reading its [`Level`] by
//!   threshold (with hysteresis), by deviation from a baseline and by forecast;
//! - [`baseline`]: the same hour of the same weekday over the past weeks,
//!   median ± k·MAD;
//! - [`forecast`]: days until a store is full from the recent trend
//!   (Theil–Sen);
//! - [`lifecycle`]: firing → acknowledged → resolved for one (rule, subject),
//!   with a hold time, a clear time and flapping suppression, as
//!   `step(state, input, now) -> (state, transitions)`;
//! - [`engine`]: all alerts of a site, one lifecycle per (rule, subject),
//!   each stepped with its rule's policy and the rule's hysteresis;
//! - [`samples`]: the one impure part, reading the recorded node samples
//!   (`node_samples`, `node_samples_minute`, the event log, store use) into
//!   the observations the pure parts take;
//! - [`service`]: the loop (`Alerts::tick(now)`) that runs the engine over
//!   them, persists alerts and their transitions, logs them and opens desk
//!   incidents for critical ones.
//!
//! Invariants: a missing or too short history never raises an alert by itself
//! (baselines and forecasts then answer "unknown", and only thresholds apply);
//! an alert is identified by (rule, subject) and there is at most one open
//! alert per identity — the caller keeps one [`lifecycle::AlertState`] per key.

pub mod baseline;
#[cfg(test)]
mod deploy_check;
pub mod engine;
pub mod forecast;
pub mod lifecycle;
pub mod rules;
pub mod samples;
pub mod service;

use serde::{Deserialize, Serialize};

/// How serious an alert is. Ordered: `Info < Warning < Critical`, so the
/// level of a reading that trips several checks is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    Critical,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 3] = [Level::Info, Level::Warning, Level::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// One recorded value of a series at a time (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: i64,
    pub value: f64,
}

/// A point from a query's `(at, value)` row.
impl From<(i64, f64)> for Point {
    fn from((at, value): (i64, f64)) -> Self {
        Point { at, value }
    }
}

/// Seconds in an hour, a day and a week (UTC offsets shift the week, see
/// [`baseline::BaselineSpec::utc_offset_secs`]).
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 24 * HOUR;
pub const WEEK: i64 = 7 * DAY;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_named() {
        assert!(Level::Info < Level::Warning && Level::Warning < Level::Critical);
        assert_eq!(
            Level::ALL.map(Level::as_str),
            ["info", "warning", "critical"]
        );
        assert_eq!(
            serde_json::to_string(&Level::Critical).expect("json"),
            "\"critical\""
        );
    }
}
