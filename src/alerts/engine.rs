//! All the alerts of a site: one [`AlertState`] per (rule, subject), stepped
//! with the rule's own policy. Still pure — the caller feeds readings and the
//! time, and writes the returned [`Event`]s to the event log.
//!
//! Deduplication is the map itself: an observation for a (rule, subject)
//! steps that key's one state, so a condition seen on every pass is one
//! alert. The rule's level is evaluated with the alert's current level as
//! "previous", so a threshold's hysteresis holds an open alert's level.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Level;
use super::lifecycle::{AlertState, Input, Transition, step};
use super::rules::{Cause, Reading, RuleSet};

/// An alert's identity: the rule and what it is about (a node name, a
/// store, `"site"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct AlertKey {
    pub rule: String,
    pub subject: String,
}

/// A transition of one alert, with the check that set its level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub key: AlertKey,
    pub at: i64,
    pub transition: Transition,
    pub cause: Option<Cause>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("no alert rule {0:?}")]
    UnknownRule(String),
    #[error("no open alert {0:?} for {1:?}")]
    NotOpen(String, String),
}

#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    states: BTreeMap<AlertKey, AlertState>,
}

/// The rule named `rule` and the key of its alert for `subject`.
fn lookup<'a>(
    rules: &'a RuleSet,
    rule: &str,
    subject: &str,
) -> Result<(&'a super::rules::Rule, AlertKey), EngineError> {
    let r = rules
        .get(rule)
        .ok_or_else(|| EngineError::UnknownRule(rule.to_owned()))?;
    let key = AlertKey {
        rule: rule.to_owned(),
        subject: subject.to_owned(),
    };
    Ok((r, key))
}

impl Engine {
    pub fn new(rules: RuleSet) -> Self {
        Engine {
            rules,
            states: BTreeMap::new(),
        }
    }

    /// Evaluates `rule` on `reading` for `subject` and steps its alert.
    pub fn observe(
        &mut self,
        rule: &str,
        subject: &str,
        reading: &Reading,
        now: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let (r, key) = lookup(&self.rules, rule, subject)?;
        let state = self
            .states
            .remove(&key)
            .unwrap_or_else(|| AlertState::new(now));
        let previous = state.is_open().then_some(state.level).flatten();
        let evaluated = r.evaluate(reading, previous);
        let level: Option<Level> = evaluated.map(|(l, _)| l);
        let (state, transitions) = step(state, Input::Observed { level }, now, &r.policy);
        let cause = evaluated.map(|(_, c)| c);
        let events = transitions
            .into_iter()
            .map(|transition| Event {
                key: key.clone(),
                at: now,
                cause: match transition {
                    Transition::Resolved | Transition::Acknowledged { .. } => None,
                    _ => cause,
                },
                transition,
            })
            .collect();
        // Forget what is over, so the map holds pending and open alerts only.
        if state.status != super::lifecycle::Status::Inactive || !state.changes.is_empty() {
            self.states.insert(key, state);
        }
        Ok(events)
    }

    /// Acknowledges an open alert.
    pub fn acknowledge(
        &mut self,
        rule: &str,
        subject: &str,
        by: &str,
        now: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let not_open = || EngineError::NotOpen(rule.to_owned(), subject.to_owned());
        let (r, key) = lookup(&self.rules, rule, subject)?;
        let state = self
            .states
            .get(&key)
            .filter(|s| s.is_open())
            .ok_or_else(not_open)?;
        let (state, transitions) = step(
            state.clone(),
            Input::Acknowledge { by: by.to_owned() },
            now,
            &r.policy,
        );
        self.states.insert(key.clone(), state);
        Ok(transitions
            .into_iter()
            .map(|transition| Event {
                key: key.clone(),
                at: now,
                transition,
                cause: None,
            })
            .collect())
    }

    /// An engine resuming where a previous one stopped (the states a
    /// service persisted); states of rules no longer in `rules` are dropped.
    pub fn restore(
        rules: RuleSet,
        states: impl IntoIterator<Item = (AlertKey, AlertState)>,
    ) -> Self {
        let mut e = Engine::new(rules);
        e.states = states
            .into_iter()
            .filter(|(k, _)| e.rules.get(&k.rule).is_some())
            .collect();
        e
    }

    /// Every remembered state (pending and open alerts, and recently
    /// resolved ones whose flap history still counts), to persist.
    pub fn states(&self) -> impl Iterator<Item = (&AlertKey, &AlertState)> {
        self.states.iter()
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Replaces the rules. Alerts of rules that are gone are forgotten and
    /// returned (the caller closes their records).
    pub fn set_rules(&mut self, rules: RuleSet) -> Vec<AlertKey> {
        self.rules = rules;
        let gone: Vec<AlertKey> = self
            .states
            .keys()
            .filter(|k| self.rules.get(&k.rule).is_none())
            .cloned()
            .collect();
        for k in &gone {
            self.states.remove(k);
        }
        gone
    }

    /// The open (fired or acknowledged) alerts.
    pub fn open(&self) -> impl Iterator<Item = (&AlertKey, &AlertState)> {
        self.states.iter().filter(|(_, s)| s.is_open())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::lifecycle::Status;

    fn v(x: f64) -> Reading {
        Reading {
            value: Some(x),
            ..Reading::default()
        }
    }

    #[test]
    fn one_alert_per_rule_and_subject() {
        let mut e = Engine::new(RuleSet::defaults());
        let mut fired = Vec::new();
        // node_memory holds 5 minutes; two nodes over it, observed every minute.
        for m in 0..=6 {
            for node in ["a", "b"] {
                fired.extend(
                    e.observe("node_memory", node, &v(93.0), m * 60)
                        .expect("rule"),
                );
            }
        }
        let subjects: Vec<(&str, &Transition)> = fired
            .iter()
            .map(|ev| (ev.key.subject.as_str(), &ev.transition))
            .collect();
        let w = Transition::Fired {
            level: Level::Warning,
        };
        assert_eq!(subjects, vec![("a", &w), ("b", &w)]);
        assert_eq!(fired[0].cause, Some(Cause::Threshold));
        assert_eq!(e.open().count(), 2);
        assert_eq!(
            e.observe("nope", "a", &v(1.0), 0),
            Err(EngineError::UnknownRule("nope".into()))
        );
    }

    #[test]
    fn restored_states_carry_on_and_removed_rules_are_forgotten() {
        let mut e = Engine::new(RuleSet::defaults());
        for m in 0..=5 {
            e.observe("node_memory", "a", &v(93.0), m * 60)
                .expect("rule");
        }
        let saved: Vec<(AlertKey, AlertState)> =
            e.states().map(|(k, s)| (k.clone(), s.clone())).collect();
        let mut again = Engine::restore(RuleSet::defaults(), saved.clone());
        // Still open: the same level seen again fires nothing new.
        assert!(
            again
                .observe("node_memory", "a", &v(93.0), 400)
                .expect("rule")
                .is_empty()
        );
        assert_eq!(again.open().count(), 1);
        // A state of a rule that no longer exists is dropped on restore…
        let mut fewer = RuleSet::defaults();
        fewer.rules.retain(|r| r.id != "node_memory");
        assert_eq!(Engine::restore(fewer.clone(), saved).open().count(), 0);
        // …and returned when the rules change under a running engine.
        let gone = again.set_rules(fewer);
        assert_eq!(
            gone,
            vec![AlertKey {
                rule: "node_memory".into(),
                subject: "a".into()
            }]
        );
        assert_eq!(again.open().count(), 0);
    }

    #[test]
    fn hysteresis_holds_an_open_alert_and_ack_works() {
        let mut e = Engine::new(RuleSet::defaults());
        for m in 0..=5 {
            e.observe("node_memory", "a", &v(98.0), m * 60)
                .expect("rule");
        }
        // 95 % is under the critical 97 % but within its 3-point hysteresis.
        for m in 6..20 {
            let ev = e
                .observe("node_memory", "a", &v(95.0), m * 60)
                .expect("rule");
            assert!(ev.is_empty(), "{ev:?}");
        }
        let ack = e
            .acknowledge("node_memory", "a", "ops", 1200)
            .expect("open");
        assert_eq!(
            ack[0].transition,
            Transition::Acknowledged { by: "ops".into() }
        );
        let (_, s) = e.open().next().expect("open");
        assert_eq!(
            (s.status, s.level),
            (Status::Acknowledged, Some(Level::Critical))
        );
        assert_eq!(
            e.acknowledge("node_memory", "b", "ops", 1200),
            Err(EngineError::NotOpen("node_memory".into(), "b".into()))
        );
        // Clear for the clear time: resolved.
        let mut all = Vec::new();
        for m in 21..=27 {
            all.extend(
                e.observe("node_memory", "a", &v(50.0), m * 60)
                    .expect("rule"),
            );
        }
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].transition.clone(), all[0].cause),
            (Transition::Resolved, None)
        );
        assert_eq!(e.open().count(), 0);
    }
}
