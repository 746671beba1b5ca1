//! The rule set: which measurements alert, at which levels.
//!
//! A [`Rule`] watches one [`Metric`] of one kind of subject (a node, a store,
//! the whole site) and levels a [`Reading`] by up to three checks, the
//! highest level winning: a [`Threshold`] (with hysteresis), a deviation from
//! the baseline ([`DeviationRule`]) and a capacity forecast
//! ([`ForecastRule`]). Each rule carries its lifecycle [`Policy`].
//!
//! The set is plain serde data (`[[rules]]` in TOML, or JSON) so it can live
//! in settings; [`RuleSet::validate`] rejects what would make no sense
//! (levels out of order, a rule with no check, duplicate ids). The defaults
//! ([`RuleSet::defaults`]) are the levels `deploy/prometheus/pvce-alerts.yml`
//! uses too; a test holds the two together.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::baseline::{Baseline, BaselineSpec, DeviationRule, Side, baseline};
use super::forecast::{Forecast, ForecastRule, TREND_WINDOW_SECS, days_until_full};
use super::lifecycle::Policy;
use super::{DAY, HOUR};
use super::{Level, Point};

/// What a rule measures. Percentages are 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Host CPU busy of a node, %.
    NodeCpuPercent,
    /// Host memory in use of a node, % of its total.
    NodeMemoryPercent,
    /// 1 while a node is down, else 0.
    NodeDown,
    /// Times a node went down in the last 7 days.
    NodeFailures7d,
    /// A node's template store, % used.
    StoreUsedPercent,
    /// The layer storage (personal layers), % used.
    LayerStorageUsedPercent,
    /// VM starts that failed in the last hour, % of attempts.
    StartFailurePercent,
    /// Console connections that ended in an error in the last hour, % of attempts.
    ConsoleErrorPercent,
    /// Rate at which an SLO's error budget is spent (1 = exactly on budget).
    SloBurnRate,
    /// Hours since the last backup run in which every item succeeded
    /// ([`crate::backup::ages`]; unknown while no backup ever ran).
    BackupAgeHours,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Bad when `value >= level`.
    Above,
    /// Bad when `value <= level`.
    Below,
}

/// Levels by fixed values. A level left out is skipped. To step down from a
/// level, the value must be `hysteresis` past that level's threshold, so a
/// value hovering at a threshold does not flap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    #[serde(default)]
    pub hysteresis: f64,
}

impl Threshold {
    fn bound(&self, l: Level) -> Option<f64> {
        match l {
            Level::Info => self.info,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }

    /// Whether `value` is at or past `bound`, with `slack` in the good direction.
    fn past(&self, value: f64, bound: f64, slack: f64) -> bool {
        match self.direction {
            Direction::Above => value >= bound - slack,
            Direction::Below => value <= bound + slack,
        }
    }

    /// The level of `value`, given the level the alert is at now
    /// (`previous`): levels up to `previous` hold until the value is
    /// `hysteresis` past them on the good side.
    pub fn level(&self, value: f64, previous: Option<Level>) -> Option<Level> {
        Level::ALL.into_iter().rev().find(|&l| {
            let slack = if Some(l) <= previous {
                self.hysteresis
            } else {
                0.0
            };
            self.bound(l).is_some_and(|b| self.past(value, b, slack))
        })
    }
}

/// A rule's lifecycle timing: [`Policy`] with defaults.
fn default_policy() -> Policy {
    Policy::default()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable identifier: with the subject, the alert's identity.
    pub id: String,
    pub metric: Metric,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviation: Option<DeviationRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastRule>,
    #[serde(default = "default_policy")]
    pub policy: Policy,
}

/// What a rule is evaluated on: the value now, and when the caller has them
/// the baseline for this hour and the capacity forecast.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub value: Option<f64>,
    pub baseline: Option<Baseline>,
    pub forecast: Option<Forecast>,
}

/// Which check gave the level (for the alert's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Threshold,
    Deviation,
    Forecast,
}

impl Rule {
    /// The reading of `value` at `now`, with what the rule's checks need
    /// from the series' `history` (any order): the baseline of this hour if
    /// the rule has a deviation check, and if it has a forecast, days until
    /// the series reaches 100 — forecasts are for "% used" series — by the
    /// trend of the last [`TREND_WINDOW_SECS`].
    pub fn reading(&self, value: Option<f64>, history: &[Point], now: i64) -> Reading {
        let baseline = self
            .deviation
            .as_ref()
            .and_then(|d| baseline(history, now, &d.spec));
        let forecast = self.forecast.as_ref().map(|f| {
            let recent: Vec<Point> = history
                .iter()
                .copied()
                .filter(|p| p.at > now - TREND_WINDOW_SECS && p.at <= now)
                .collect();
            days_until_full(&recent, 100.0, now, f.min_span_secs)
        });
        Reading {
            value,
            baseline,
            forecast,
        }
    }

    /// The level of `r` and the check that gave it, `None` when no check
    /// trips (a disabled rule never does). On equal levels the threshold is
    /// named before the baseline, the baseline before the forecast.
    pub fn evaluate(&self, r: &Reading, previous: Option<Level>) -> Option<(Level, Cause)> {
        if !self.enabled {
            return None;
        }
        let by_threshold = self
            .threshold
            .as_ref()
            .zip(r.value)
            .and_then(|(t, v)| t.level(v, previous))
            .map(|l| (l, Cause::Threshold));
        let by_deviation = self
            .deviation
            .as_ref()
            .zip(r.value.zip(r.baseline))
            .and_then(|(d, (v, b))| d.level(v, &b))
            .map(|l| (l, Cause::Deviation));
        let by_forecast = self
            .forecast
            .as_ref()
            .zip(r.forecast)
            .and_then(|(f, x)| f.level(x))
            .map(|l| (l, Cause::Forecast));
        [by_threshold, by_deviation, by_forecast]
            .into_iter()
            .flatten()
            .fold(None, |best: Option<(Level, Cause)>, c| match best {
                Some(b) if b.0 >= c.0 => Some(b),
                _ => Some(c),
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("the rules are not valid TOML for a rule set: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("rule {0:?} appears twice")]
    DuplicateId(String),
    #[error("rule {0:?} has no threshold, deviation or forecast")]
    NoCheck(String),
    #[error("rule {0:?}: levels must be in order (info, warning, critical in the bad direction)")]
    LevelOrder(String),
    #[error("rule {0:?}: a number is out of range ({1})")]
    OutOfRange(String, &'static str),
    #[error("a rule id must be 1 to {MAX_ID} characters: lowercase letters, digits, _ and -")]
    BadId,
    #[error("at most {MAX_RULES} rules")]
    TooMany,
}

/// Longest rule id (it names alerts and desk incidents).
pub const MAX_ID: usize = 64;
/// Most rules in a set.
pub const MAX_RULES: usize = 100;
/// A baseline looks back at most a year: the samples kept grow with it.
pub const MAX_BASELINE_WEEKS: u32 = 52;
/// Time zones lie within ±14 h of UTC.
pub const MAX_UTC_OFFSET_SECS: i64 = 14 * 3600;
/// Holds, clears, flap windows and forecast spans are at most a year; more
/// is a typo, and the sums over them must not overflow.
pub const MAX_SPAN_SECS: i64 = 365 * 24 * 3600;

/// All the rules of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

fn pct_above(info: Option<f64>, warning: f64, critical: f64, hysteresis: f64) -> Threshold {
    Threshold {
        direction: Direction::Above,
        info,
        warning: Some(warning),
        critical: Some(critical),
        hysteresis,
    }
}

fn rule(id: &str, metric: Metric) -> Rule {
    Rule {
        id: id.to_owned(),
        metric,
        enabled: true,
        threshold: None,
        deviation: None,
        forecast: None,
        policy: Policy::default(),
    }
}

impl RuleSet {
    /// The built-in rules. The Prometheus rules in `deploy/` use the same
    /// numbers (checked by a test).
    pub fn defaults() -> Self {
        let capacity = ForecastRule {
            warning_days: 14.0,
            critical_days: 3.0,
            min_span_secs: DAY,
        };
        let rules = vec![
            Rule {
                threshold: Some(pct_above(None, 85.0, 95.0, 5.0)),
                // Busier than this hour usually is (a class that does not
                // normally run, a runaway guest), even below the thresholds.
                deviation: Some(DeviationRule {
                    side: Side::Above,
                    k_warning: 4.0,
                    k_critical: 8.0,
                    min_spread: 5.0,
                    spec: BaselineSpec::default(),
                }),
                policy: Policy {
                    hold_secs: 600,
                    ..Policy::default()
                },
                ..rule("node_cpu", Metric::NodeCpuPercent)
            },
            Rule {
                threshold: Some(pct_above(None, 90.0, 97.0, 3.0)),
                ..rule("node_memory", Metric::NodeMemoryPercent)
            },
            Rule {
                threshold: Some(Threshold {
                    direction: Direction::Above,
                    info: None,
                    warning: None,
                    critical: Some(1.0),
                    hysteresis: 0.0,
                }),
                policy: Policy {
                    hold_secs: 60,
                    clear_secs: 120,
                    ..Policy::default()
                },
                ..rule("node_down", Metric::NodeDown)
            },
            Rule {
                threshold: Some(pct_above(Some(1.0), 3.0, 6.0, 0.0)),
                policy: Policy {
                    hold_secs: 0,
                    ..Policy::default()
                },
                ..rule("node_failures", Metric::NodeFailures7d)
            },
            Rule {
                threshold: Some(pct_above(Some(75.0), 85.0, 95.0, 2.0)),
                forecast: Some(capacity.clone()),
                policy: Policy {
                    hold_secs: 0,
                    clear_secs: HOUR,
                    ..Policy::default()
                },
                ..rule("store_capacity", Metric::StoreUsedPercent)
            },
            Rule {
                threshold: Some(pct_above(Some(75.0), 85.0, 95.0, 2.0)),
                forecast: Some(capacity),
                policy: Policy {
                    hold_secs: 0,
                    clear_secs: HOUR,
                    ..Policy::default()
                },
                ..rule("layer_storage_capacity", Metric::LayerStorageUsedPercent)
            },
            Rule {
                threshold: Some(pct_above(None, 5.0, 20.0, 1.0)),
                ..rule("start_failures", Metric::StartFailurePercent)
            },
            Rule {
                threshold: Some(pct_above(None, 2.0, 10.0, 0.5)),
                ..rule("console_errors", Metric::ConsoleErrorPercent)
            },
            Rule {
                // Burn rates of the multi-window method: 14.4 spends a 30-day
                // budget in ~2 days, 6 in 5 days, 1 exactly over the period.
                threshold: Some(pct_above(Some(1.0), 6.0, 14.4, 0.0)),
                ..rule("slo_burn", Metric::SloBurnRate)
            },
            Rule {
                // Nightly runs: a day and a half means one night was
                // missed, three days that backups are broken.
                threshold: Some(pct_above(None, 36.0, 72.0, 0.0)),
                policy: Policy {
                    hold_secs: 0,
                    ..Policy::default()
                },
                ..rule("backup_age", Metric::BackupAgeHours)
            },
        ];
        RuleSet { rules }
    }

    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let set: RuleSet = toml::from_str(text)?;
        set.validate()?;
        Ok(set)
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn validate(&self) -> Result<(), RulesError> {
        if self.rules.len() > MAX_RULES {
            return Err(RulesError::TooMany);
        }
        let mut ids = HashSet::new();
        for r in &self.rules {
            let id_ok = !r.id.is_empty()
                && r.id.len() <= MAX_ID
                && r.id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !id_ok {
                return Err(RulesError::BadId);
            }
            let bad = |what| RulesError::OutOfRange(r.id.clone(), what);
            if !ids.insert(r.id.as_str()) {
                return Err(RulesError::DuplicateId(r.id.clone()));
            }
            if r.threshold.is_none() && r.deviation.is_none() && r.forecast.is_none() {
                return Err(RulesError::NoCheck(r.id.clone()));
            }
            if let Some(t) = &r.threshold {
                let levels: Vec<f64> = Level::ALL.iter().filter_map(|&l| t.bound(l)).collect();
                if levels.is_empty() {
                    return Err(RulesError::NoCheck(r.id.clone()));
                }
                if levels.iter().any(|x| !x.is_finite()) {
                    return Err(bad("threshold"));
                }
                if !(t.hysteresis.is_finite() && t.hysteresis >= 0.0) {
                    return Err(bad("hysteresis"));
                }
                let ordered = levels.windows(2).all(|w| match t.direction {
                    Direction::Above => w[0] < w[1],
                    Direction::Below => w[0] > w[1],
                });
                if !ordered {
                    return Err(RulesError::LevelOrder(r.id.clone()));
                }
            }
            if let Some(d) = &r.deviation {
                if !(d.k_warning > 0.0 && d.k_critical.is_finite() && d.min_spread > 0.0) {
                    return Err(bad("deviation"));
                }
                if d.k_warning >= d.k_critical {
                    return Err(RulesError::LevelOrder(r.id.clone()));
                }
                if d.spec.weeks == 0
                    || d.spec.weeks > MAX_BASELINE_WEEKS
                    || d.spec.min_weeks == 0
                    || d.spec.min_weeks > d.spec.weeks
                {
                    return Err(bad("baseline weeks"));
                }
                if d.spec.utc_offset_secs.abs() > MAX_UTC_OFFSET_SECS {
                    return Err(bad("baseline utc_offset_secs"));
                }
            }
            if let Some(f) = &r.forecast {
                if !(f.critical_days >= 0.0 && f.warning_days.is_finite())
                    || f.min_span_secs < 0
                    || f.min_span_secs > MAX_SPAN_SECS
                {
                    return Err(bad("forecast"));
                }
                if f.critical_days >= f.warning_days {
                    return Err(RulesError::LevelOrder(r.id.clone()));
                }
            }
            let p = &r.policy;
            let span = 0..=MAX_SPAN_SECS;
            if !span.contains(&p.hold_secs)
                || !span.contains(&p.clear_secs)
                || !span.contains(&p.flap_window_secs)
                || p.flap_window_secs == 0
                || p.flap_max_changes < 2
            {
                return Err(bad("policy"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn ids_and_set_size_are_bounded() {
        let mut set = RuleSet::defaults();
        assert!(set.validate().is_ok());
        for bad in ["", "Node", "a b", "<x>", &"x".repeat(MAX_ID + 1)] {
            set.rules[0].id = bad.to_owned();
            assert!(matches!(set.validate(), Err(RulesError::BadId)), "{bad:?}");
        }
        set.rules[0].id = "my-rule_2".into();
        assert!(set.validate().is_ok());
        let one = set.rules[1].clone();
        set.rules = (0..=MAX_RULES)
            .map(|i| Rule {
                id: format!("r{i}"),
                ..one.clone()
            })
            .collect();
        assert!(matches!(set.validate(), Err(RulesError::TooMany)));
    }

    #[test]
    fn spans_weeks_and_offsets_are_bounded() {
        let base = RuleSet::defaults();
        let i = base
            .rules
            .iter()
            .position(|r| r.deviation.is_some())
            .expect("a baseline rule");
        let edits: [fn(&mut Rule); 5] = [
            |r| r.deviation.as_mut().expect("baseline").spec.weeks = MAX_BASELINE_WEEKS + 1,
            |r| {
                r.deviation.as_mut().expect("baseline").spec.utc_offset_secs =
                    -MAX_UTC_OFFSET_SECS - 1
            },
            |r| r.policy.hold_secs = MAX_SPAN_SECS + 1,
            |r| r.policy.clear_secs = -1,
            |r| r.policy.flap_window_secs = 0,
        ];
        for (n, edit) in edits.iter().enumerate() {
            let mut set = base.clone();
            edit(&mut set.rules[i]);
            assert!(
                matches!(set.validate(), Err(RulesError::OutOfRange(..))),
                "edit {n}"
            );
        }
        let mut set = base.clone();
        let d = set.rules[i].deviation.as_mut().expect("baseline");
        d.spec.weeks = MAX_BASELINE_WEEKS;
        d.spec.utc_offset_secs = MAX_UTC_OFFSET_SECS;
        set.rules[i].policy.hold_secs = MAX_SPAN_SECS;
        assert!(set.validate().is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_defaults_are_valid_and_cover_the_issue() {
        let d = RuleSet::defaults();
        d.validate().expect("valid");
        for m in [
            Metric::NodeCpuPercent,
            Metric::NodeMemoryPercent,
            Metric::NodeDown,
            Metric::NodeFailures7d,
            Metric::StoreUsedPercent,
            Metric::LayerStorageUsedPercent,
            Metric::StartFailurePercent,
            Metric::ConsoleErrorPercent,
            Metric::SloBurnRate,
            Metric::BackupAgeHours,
        ] {
            assert!(d.rules.iter().any(|r| r.metric == m), "{m:?}");
        }
    }

    #[test]
    fn toml_and_json_round_trip() {
        let d = RuleSet::defaults();
        let text = toml::to_string(&d).expect("toml");
        assert_eq!(RuleSet::from_toml(&text).expect("parse"), d);
        let json = serde_json::to_string(&d).expect("json");
        assert_eq!(serde_json::from_str::<RuleSet>(&json).expect("parse"), d);
    }

    #[test]
    fn a_hand_written_rule() {
        let set = RuleSet::from_toml(
            r#"
            [[rules]]
            id = "cpu"
            metric = "node_cpu_percent"
            threshold = { direction = "above", warning = 80, critical = 90 }
            "#,
        )
        .expect("parse");
        let r = set.get("cpu").expect("rule");
        assert_eq!(r.policy, Policy::default());
        assert!(r.enabled);
        let at = |v| {
            r.evaluate(
                &Reading {
                    value: Some(v),
                    ..Reading::default()
                },
                None,
            )
        };
        assert_eq!(at(79.9), None);
        assert_eq!(at(80.0), Some((Level::Warning, Cause::Threshold)));
        assert_eq!(at(95.0), Some((Level::Critical, Cause::Threshold)));
    }

    #[test]
    fn bad_rule_sets_are_refused() {
        let bad = [
            ("[[rules]]\nid = \"x\"\nmetric = \"nope\"\n", "Toml"),
            ("[[rules]]\nid = \"x\"\nmetric = \"node_down\"\n", "NoCheck"),
            (
                "[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"above\", warning = 9, critical = 1 }\n",
                "LevelOrder",
            ),
            (
                "[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"below\", warning = 1, critical = 9 }\n",
                "LevelOrder",
            ),
            (
                "[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"above\", critical = 1, hysteresis = -1 }\n",
                "OutOfRange",
            ),
            (
                "[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"above\", critical = 1 }\n[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"above\", critical = 1 }\n",
                "DuplicateId",
            ),
            (
                "[[rules]]\nid = \"x\"\nmetric = \"node_down\"\nthreshold = { direction = \"above\", critical = 1 }\npolicy = { hold_secs = 0, clear_secs = 0, flap_window_secs = 60, flap_max_changes = 1 }\n",
                "OutOfRange",
            ),
        ];
        for (text, want) in bad {
            let err = RuleSet::from_toml(text).expect_err(text);
            assert!(format!("{err:?}").starts_with(want), "{text}: {err:?}");
        }
    }

    #[test]
    fn hysteresis_holds_a_level_near_its_threshold() {
        let t = pct_above(None, 85.0, 95.0, 5.0);
        assert_eq!(t.level(94.0, None), Some(Level::Warning));
        assert_eq!(t.level(94.0, Some(Level::Critical)), Some(Level::Critical));
        assert_eq!(t.level(89.9, Some(Level::Critical)), Some(Level::Warning));
        assert_eq!(t.level(82.0, Some(Level::Warning)), Some(Level::Warning));
        assert_eq!(t.level(79.9, Some(Level::Warning)), None);
        let below = Threshold {
            direction: Direction::Below,
            info: None,
            warning: Some(10.0),
            critical: Some(5.0),
            hysteresis: 1.0,
        };
        assert_eq!(below.level(5.0, None), Some(Level::Critical));
        assert_eq!(
            below.level(5.5, Some(Level::Critical)),
            Some(Level::Critical)
        );
        assert_eq!(below.level(10.5, None), None);
    }

    #[test]
    fn the_highest_check_wins() {
        let d = RuleSet::defaults();
        let store = d.get("store_capacity").expect("rule");
        let r = Reading {
            value: Some(80.0),
            baseline: None,
            forecast: Some(Forecast::InDays { days: 2.0 }),
        };
        assert_eq!(
            store.evaluate(&r, None),
            Some((Level::Critical, Cause::Forecast))
        );
        let r = Reading {
            forecast: Some(Forecast::InDays { days: 10.0 }),
            ..r
        };
        assert_eq!(
            store.evaluate(&r, None),
            Some((Level::Warning, Cause::Forecast))
        );
        let r = Reading {
            forecast: Some(Forecast::NotGrowing),
            ..r
        };
        assert_eq!(
            store.evaluate(&r, None),
            Some((Level::Info, Cause::Threshold))
        );
        // CPU: 60 % is under the thresholds but far above a quiet hour.
        let cpu = d.get("node_cpu").expect("rule");
        let quiet = Baseline {
            median: 5.0,
            mad: 1.0,
            weeks: 4,
        };
        let r = Reading {
            value: Some(60.0),
            baseline: Some(quiet),
            forecast: None,
        };
        assert_eq!(
            cpu.evaluate(&r, None),
            Some((Level::Critical, Cause::Deviation))
        );
        let mut off = cpu.clone();
        off.enabled = false;
        assert_eq!(off.evaluate(&r, None), None);
        assert_eq!(
            cpu.evaluate(&Reading::default(), None),
            None,
            "no value, no alert"
        );
    }

    #[test]
    fn a_reading_from_history() {
        let now = 1_764_496_800 + 30 * DAY;
        // A store at 50 % a week ago, 4 points a day more since: 78 % now,
        // full in 5.5 days — a warning by forecast, only info by threshold.
        let history: Vec<Point> = (0..=7 * 24)
            .map(|h| Point {
                at: now - 7 * DAY + h * HOUR,
                value: 50.0 + 4.0 * h as f64 / 24.0,
            })
            .collect();
        let d = RuleSet::defaults();
        let store = d.get("store_capacity").expect("rule");
        let r = store.reading(Some(78.0), &history, now);
        let Some(Forecast::InDays { days }) = r.forecast else {
            panic!("{r:?}")
        };
        assert!((days - 5.5).abs() < 1e-9, "{days}");
        assert_eq!(r.baseline, None, "no deviation check, no baseline");
        assert_eq!(
            store.evaluate(&r, None),
            Some((Level::Warning, Cause::Forecast))
        );
        // CPU: a baseline (from four weeks of the same hour), no forecast.
        let cpu = d.get("node_cpu").expect("rule");
        let past: Vec<Point> = (1..=4)
            .map(|k| Point {
                at: now - k * super::super::WEEK + 60,
                value: 10.0,
            })
            .collect();
        let r = cpu.reading(Some(12.0), &past, now + 120);
        assert_eq!(r.forecast, None);
        assert_eq!(r.baseline.map(|b| b.median), Some(10.0));
        assert_eq!(cpu.evaluate(&r, None), None);
    }

    proptest! {
        /// Hysteresis only ever keeps a level, never invents one: with a
        /// previous level the result is between the plain level and it.
        #[test]
        fn hysteresis_is_bounded(v in 0.0f64..120.0, prev in proptest::option::of(0usize..3)) {
            let t = pct_above(Some(50.0), 85.0, 95.0, 5.0);
            let prev = prev.map(|i| Level::ALL[i]);
            let plain = t.level(v, None);
            let held = t.level(v, prev);
            prop_assert!(held >= plain);
            prop_assert!(held <= plain.max(prev));
        }
    }
}
