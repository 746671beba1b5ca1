//! The alert loop: runs the pure [`Engine`] over what pvce records and keeps
//! its results.
//!
//! [`Alerts::tick`] takes the instant to act at (the app passes the wall
//! clock every [`TICK`]; tests pass their own), gathers one observation per
//! (rule, subject) through [`super::samples::observe`], steps the engine
//! and writes each transition: the alert's row (`alerts`), its history
//! (`alert_transitions`) and the cluster event log. A critical alert opens
//! (or joins) a desk system incident. Admins edit the rule set
//! ([`Alerts::set_rules`], validated); staff and admins acknowledge.
//!
//! Invariants:
//! - The engine's per-alert states are persisted after every change
//!   (`alert_states`), so a restart neither forgets an open alert nor fires
//!   it a second time; at most one open alert row per (rule, subject) (a
//!   unique index holds it).
//! - An open alert whose subject is no longer observed (a node removed, a
//!   rule disabled) is observed as clear, so it resolves by its policy.
//! - One lock around the engine: a tick, an acknowledgement and a rules
//!   change never interleave; when writing their results fails, the
//!   in-memory engine is dropped and reloaded from what was persisted.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::Level;
use super::engine::{AlertKey, Engine, EngineError, Event};
use super::lifecycle::{AlertState, Transition};
use super::rules::{Reading, RuleSet, RulesError};
use super::samples::{self, Observation, text_time};
use crate::db::{self, Pool};
use crate::desk::notices::{self, AlertNotice};
use crate::desk::notify::AlertChange;
use crate::desk::{Desk, DeskError, SystemIncident};
use crate::events::{self, EventKind, NewEvent};

/// How often the app's loop ticks.
pub const TICK: Duration = Duration::from_secs(60);
/// Most alerts one list returns.
pub const MAX_LIMIT: u32 = 500;
/// Resolved alerts younger than this are "recent" in the default list.
pub const RECENT_SECS: i64 = 7 * super::DAY;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no such alert")]
    NotFound,
    #[error("the alert is not firing (already acknowledged or resolved)")]
    NotOpen,
    #[error("the alert rules are not valid: {0}")]
    InvalidRules(#[from] RulesError),
    #[error("{0}")]
    BadQuery(&'static str),
    #[error("stored alert data is unreadable: {0}")]
    Stored(#[from] serde_json::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Desk(#[from] DeskError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// An alert's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Acknowledged,
    Resolved,
}

/// One transition of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertTransition {
    /// RFC 3339.
    pub at: String,
    /// `fired`, `escalated`, `deescalated`, `acknowledged`,
    /// `flapping_started`, `resolved`.
    pub kind: String,
    pub level: Option<Level>,
    /// Who acknowledged; the level it came from.
    pub detail: String,
}

/// An alert from firing to resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: Uuid,
    pub rule: String,
    pub metric: String,
    pub subject: String,
    pub subject_name: String,
    pub level: Level,
    pub state: Status,
    /// `threshold`, `deviation` or `forecast`: the check that set the level.
    pub cause: Option<String>,
    /// The latest observed value (in the rule's unit).
    pub value: Option<f64>,
    pub flapping: bool,
    /// When it fired (RFC 3339, as every time of the API).
    pub started_at: String,
    pub updated_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    /// The desk incident a critical alert opened or joined.
    pub ticket_id: Option<Uuid>,
    pub transitions: Vec<AlertTransition>,
}

/// Filters of the list.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` (firing or acknowledged), `firing`, `acknowledged`,
    /// `resolved`, or `all`; default: the open ones and those resolved in
    /// the last week.
    pub state: Option<String>,
    pub level: Option<Level>,
    pub rule: Option<String>,
    /// 1..=500, default 100.
    pub limit: Option<u32>,
}

/// What one tick did (for tests and the log).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub observed: usize,
    pub transitions: usize,
}

#[derive(Debug)]
pub struct Alerts {
    pool: Pool,
    desk: Arc<Desk>,
    data_dir: PathBuf,
    /// The service levels' figures (start failures, console errors, SLO
    /// burn); without them those rules observe nothing.
    signals: Option<Arc<dyn samples::SignalSource>>,
    /// Loaded from the database on first use.
    engine: tokio::sync::Mutex<Option<Engine>>,
}

impl Alerts {
    pub fn new(pool: Pool, desk: Arc<Desk>, data_dir: PathBuf) -> Self {
        Self {
            pool,
            desk,
            data_dir,
            signals: None,
            engine: tokio::sync::Mutex::new(None),
        }
    }

    /// Where the service-level rules read their figures.
    #[must_use]
    pub fn with_signals(mut self, signals: Arc<dyn samples::SignalSource>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// The stored rule set, or the defaults.
    async fn stored_rules(&self) -> Result<RuleSet, AlertError> {
        let text: Option<String> = sqlx::query_scalar("SELECT rules FROM alert_rules WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match text {
            Some(t) => serde_json::from_str(&t)?,
            None => RuleSet::defaults(),
        })
    }

    async fn load(&self) -> Result<Engine, AlertError> {
        let rules = self.stored_rules().await?;
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT rule, subject, state FROM alert_states")
                .fetch_all(&self.pool)
                .await?;
        let mut states = Vec::new();
        for (rule, subject, state) in rows {
            let s: AlertState = serde_json::from_str(&state)?;
            states.push((AlertKey { rule, subject }, s));
        }
        Ok(Engine::restore(rules, states))
    }

    async fn save(&self, engine: &Engine) -> Result<(), AlertError> {
        let mut tx = db::begin(&self.pool).await?;
        sqlx::query("DELETE FROM alert_states")
            .execute(&mut *tx)
            .await?;
        for (k, s) in engine.states() {
            sqlx::query("INSERT INTO alert_states (rule, subject, state) VALUES ($1, $2, $3)")
                .bind(&k.rule)
                .bind(&k.subject)
                .bind(serde_json::to_string(s)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Observes everything at `now` and writes what changed.
    pub async fn tick(&self, now: i64) -> Result<TickReport, AlertError> {
        let mut guard = self.engine.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        let Some(engine) = guard.as_mut() else {
            return Ok(TickReport::default());
        };
        let res = self.step_all(engine, now).await;
        if res.is_err() {
            // Part of what the engine stepped may not be written: start
            // again from what was persisted.
            *guard = None;
        }
        res
    }

    async fn step_all(&self, engine: &mut Engine, now: i64) -> Result<TickReport, AlertError> {
        let rules = engine.rules().clone();
        let observations = samples::observe(
            &self.pool,
            &rules,
            now,
            &self.data_dir,
            self.signals.as_deref(),
        )
        .await?;
        let seen: BTreeSet<(String, String)> = observations
            .iter()
            .map(|o| (o.rule.clone(), o.subject.clone()))
            .collect();
        let mut report = TickReport {
            observed: observations.len(),
            transitions: 0,
        };
        for o in &observations {
            let Some(rule) = rules.get(&o.rule) else {
                continue;
            };
            let reading = rule.reading(o.value, &o.history, now);
            let evs = engine.observe(&o.rule, &o.subject, &reading, now)?;
            report.transitions += evs.len();
            self.apply(&evs, Some(o)).await?;
            if let Some(v) = o.value {
                sqlx::query(
                    "UPDATE alerts SET value = $1 WHERE rule = $2 AND subject = $3 AND status <> 'resolved'",
                )
                .bind(v)
                .bind(&o.rule)
                .bind(&o.subject)
                .execute(&self.pool)
                .await?;
            }
        }
        // What is remembered but was not observed now is clear.
        let unseen: Vec<AlertKey> = engine
            .states()
            .map(|(k, _)| k.clone())
            .filter(|k| !seen.contains(&(k.rule.clone(), k.subject.clone())))
            .collect();
        for k in unseen {
            let evs = engine.observe(&k.rule, &k.subject, &Reading::default(), now)?;
            report.transitions += evs.len();
            self.apply(&evs, None).await?;
        }
        self.save(engine).await?;
        Ok(report)
    }

    /// Writes the engine's events: the alert rows, their history, the event
    /// log, and the desk incident of a critical alert.
    async fn apply(&self, evs: &[Event], o: Option<&Observation>) -> Result<(), AlertError> {
        for ev in evs {
            let open: Option<(String, String, String)> = sqlx::query_as(
                "SELECT id, subject_name, level FROM alerts WHERE rule = $1 AND subject = $2 AND status <> 'resolved'",
            )
            .bind(&ev.key.rule)
            .bind(&ev.key.subject)
            .fetch_optional(&self.pool)
            .await?;
            let cause = ev.cause.map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            });
            let (kind, level, detail): (&str, Option<Level>, String) = match &ev.transition {
                Transition::Fired { level } => ("fired", Some(*level), String::new()),
                Transition::Escalated { from, to } => {
                    ("escalated", Some(*to), from.as_str().to_owned())
                }
                Transition::Deescalated { from, to } => {
                    ("deescalated", Some(*to), from.as_str().to_owned())
                }
                Transition::Acknowledged { by } => ("acknowledged", None, by.clone()),
                Transition::FlappingStarted => ("flapping_started", None, String::new()),
                Transition::Resolved => ("resolved", None, String::new()),
            };
            let had_level = open.as_ref().map(|(_, _, l)| l.clone());
            let open = open.map(|(id, name, _)| (id, name));
            let (id, name) = match (&ev.transition, open) {
                (Transition::Fired { level }, None) => {
                    let id = Uuid::new_v4();
                    let name = o.map_or_else(|| ev.key.subject.clone(), |o| o.subject_name.clone());
                    let metric = o
                        .and_then(|o| serde_json::to_value(o.metric).ok())
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    sqlx::query(
                        "INSERT INTO alerts (id, rule, metric, subject, subject_name, level, status, cause, value, fired_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, 'firing', $7, $8, $9, $10)",
                    )
                    .bind(id.to_string())
                    .bind(&ev.key.rule)
                    .bind(metric)
                    .bind(&ev.key.subject)
                    .bind(&name)
                    .bind(level.as_str())
                    .bind(&cause)
                    .bind(crate::db::Real(o.and_then(|o| o.value)))
                    .bind(ev.at)
                    .bind(ev.at)
                    .execute(&self.pool)
                    .await?;
                    (id, name)
                }
                (_, Some((id, name))) => {
                    let id = db::parse_uuid(&id)?;
                    let set = match &ev.transition {
                        Transition::Escalated { .. } => {
                            "level = $2, status = 'firing', acknowledged_at = NULL, acknowledged_by = NULL, cause = COALESCE($3, cause)"
                        }
                        Transition::Deescalated { .. } => "level = $2, cause = COALESCE($3, cause)",
                        Transition::Acknowledged { .. } => {
                            "status = 'acknowledged', acknowledged_at = $4, acknowledged_by = $5"
                        }
                        Transition::FlappingStarted => "flapping = 1",
                        Transition::Resolved => "status = 'resolved', resolved_at = $4",
                        // A second "fired" for an open row cannot happen
                        // (the engine has one state per key); keep the row.
                        Transition::Fired { .. } => "level = $2",
                    };
                    sqlx::query(&format!(
                        "UPDATE alerts SET {set}, updated_at = $4 WHERE id = $1"
                    ))
                    .bind(id.to_string())
                    .bind(level.map(Level::as_str))
                    .bind(&cause)
                    .bind(ev.at)
                    .bind(&detail)
                    .execute(&self.pool)
                    .await?;
                    (id, name)
                }
                // Not fired and no open row: nothing to attach it to.
                (_, None) => continue,
            };
            sqlx::query(
                "INSERT INTO alert_transitions (alert_id, at, kind, level, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(ev.at)
            .bind(kind)
            .bind(level.map(Level::as_str))
            .bind(&detail)
            .execute(&self.pool)
            .await?;
            self.log(ev, id, &name, level, cause.as_deref()).await;
            let change = match &ev.transition {
                Transition::Fired { .. } => Some(AlertChange::Fired),
                Transition::Escalated { .. } => Some(AlertChange::Escalated),
                Transition::Resolved => Some(AlertChange::Resolved),
                _ => None,
            };
            let told_level = level.map(Level::as_str).or(had_level.as_deref());
            if let (Some(change), Some(told_level)) = (change, told_level) {
                notices::queue_alert(
                    &self.pool,
                    &AlertNotice {
                        alert_id: id,
                        at: ev.at,
                        change,
                        level: told_level,
                        rule: &ev.key.rule,
                        subject: &name,
                        value: o.and_then(|o| o.value),
                        cause: cause.as_deref(),
                    },
                )
                .await?;
            }
            if level == Some(Level::Critical) {
                self.incident(ev, id, &name, o).await?;
            }
        }
        Ok(())
    }

    async fn log(
        &self,
        ev: &Event,
        id: Uuid,
        name: &str,
        level: Option<Level>,
        cause: Option<&str>,
    ) {
        let (kind, what) = match &ev.transition {
            Transition::Fired { .. } => (EventKind::AlertFired, "fired".to_owned()),
            Transition::Escalated { from, .. } => (
                EventKind::AlertEscalated,
                format!("escalated from {}", from.as_str()),
            ),
            Transition::Deescalated { from, .. } => (
                EventKind::AlertDeescalated,
                format!("de-escalated from {}", from.as_str()),
            ),
            Transition::Acknowledged { by } => (
                EventKind::AlertAcknowledged,
                format!("acknowledged by {by}"),
            ),
            Transition::FlappingStarted => (EventKind::AlertFlapping, "flapping".to_owned()),
            Transition::Resolved => (EventKind::AlertResolved, "resolved".to_owned()),
        };
        let mut message = format!("alert {} on {name} {what}", ev.key.rule);
        if let Some(l) = level {
            message.push_str(&format!(" at {}", l.as_str()));
        }
        if let Some(c) = cause {
            message.push_str(&format!(" ({c})"));
        }
        message.push_str(&format!(" [alert {id}]"));
        let node = Uuid::parse_str(&ev.key.subject).ok();
        let e = match node {
            Some(n) => NewEvent::node(kind, n, name, message),
            None => NewEvent::site(kind, message),
        };
        let actor = match &ev.transition {
            Transition::Acknowledged { by } => Some(by.as_str()),
            _ => None,
        };
        events::record(&self.pool, e.by(actor)).await;
    }

    /// A critical alert opens or joins the desk incident of its key.
    async fn incident(
        &self,
        ev: &Event,
        id: Uuid,
        name: &str,
        o: Option<&Observation>,
    ) -> Result<(), AlertError> {
        let key = format!("alert:{}:{}", ev.key.rule, ev.key.subject);
        let value = o
            .and_then(|o| o.value)
            .map_or_else(String::new, |v| format!(" (value {v:.1})"));
        let title = format!("Critical alert {} on {name}", ev.key.rule);
        let description = format!(
            "Alert {} on {name} is critical{value}; see the alerts page.",
            ev.key.rule
        );
        let ticket = self
            .desk
            .open_system_incident(&SystemIncident {
                key: &key,
                title: &title,
                description: &description,
                node_id: o.and_then(|o| o.node_id),
                context: json!({"alert": {"id": id, "rule": ev.key.rule, "subject": name}}),
            })
            .await?;
        if let Some(t) = ticket {
            sqlx::query("UPDATE alerts SET ticket_id = $1 WHERE id = $2")
                .bind(t.to_string())
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Acknowledges a firing alert.
    pub async fn acknowledge(&self, id: Uuid, by: &str, now: i64) -> Result<Alert, AlertError> {
        let mut guard = self.engine.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        let Some(engine) = guard.as_mut() else {
            return Err(AlertError::NotFound);
        };
        let alert = self.get(id).await?;
        if alert.state != Status::Firing {
            return Err(AlertError::NotOpen);
        }
        let evs = match engine.acknowledge(&alert.rule, &alert.subject, by, now) {
            Ok(evs) => evs,
            Err(EngineError::NotOpen(..) | EngineError::UnknownRule(_)) => {
                return Err(AlertError::NotOpen);
            }
        };
        let written = match self.apply(&evs, None).await {
            Ok(()) => self.save(engine).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            *guard = None;
            return Err(e);
        }
        self.get(id).await
    }

    pub async fn rules(&self) -> Result<RuleSet, AlertError> {
        let guard = self.engine.lock().await;
        match guard.as_ref() {
            Some(e) => Ok(e.rules().clone()),
            None => self.stored_rules().await,
        }
    }

    /// Validates and stores a new rule set; alerts of rules that are gone
    /// resolve now.
    pub async fn set_rules(
        &self,
        rules: RuleSet,
        by: &str,
        now: i64,
    ) -> Result<RuleSet, AlertError> {
        rules.validate()?;
        let mut guard = self.engine.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        let Some(engine) = guard.as_mut() else {
            return Err(AlertError::NotFound);
        };
        sqlx::query(
            "INSERT INTO alert_rules (id, rules, updated_at, updated_by) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET rules = $1, updated_at = $2, updated_by = $3",
        )
        .bind(serde_json::to_string(&rules)?)
        .bind(now)
        .bind(by)
        .execute(&self.pool)
        .await?;
        crate::audit::settings_changed(
            &self.pool,
            crate::audit::actor_named(&self.pool, by).await,
            crate::audit::Action::SettingsAlertRules,
            "alert_rules",
            serde_json::to_value(&rules).unwrap_or_default(),
        )
        .await;
        let gone = engine.set_rules(rules.clone());
        let evs: Vec<Event> = gone
            .into_iter()
            .map(|key| Event {
                key,
                at: now,
                transition: Transition::Resolved,
                cause: None,
            })
            .collect();
        let written = match self.apply(&evs, None).await {
            Ok(()) => self.save(engine).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            *guard = None;
            return Err(e);
        }
        Ok(rules)
    }

    /// Alerts by the filters, newest first.
    pub async fn list(&self, q: &ListQuery, now: i64) -> Result<Vec<Alert>, AlertError> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(AlertError::BadQuery("limit must be 1 to 500"));
        }
        let status = match q.state.as_deref() {
            None => "default",
            Some(s @ ("open" | "firing" | "acknowledged" | "resolved" | "all")) => s,
            Some(_) => {
                return Err(AlertError::BadQuery(
                    "state must be open, firing, acknowledged, resolved or all",
                ));
            }
        };
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE
               CASE $1 WHEN 'open' THEN status <> 'resolved'
                       WHEN 'firing' THEN status = 'firing'
                       WHEN 'acknowledged' THEN status = 'acknowledged'
                       WHEN 'resolved' THEN status = 'resolved'
                       WHEN 'all' THEN 1 = 1
                       ELSE status <> 'resolved' OR resolved_at >= $2 END
               AND ($3 IS NULL OR level = $3) AND ($4 IS NULL OR rule = $4)
             ORDER BY (status = 'resolved'), fired_at DESC, id LIMIT $5",
        )
        .bind(status)
        .bind(now - RECENT_SECS)
        .bind(q.level.map(Level::as_str))
        .bind(&q.rule)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.alert_of(r).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, id: Uuid) -> Result<Alert, AlertError> {
        let row = sqlx::query("SELECT * FROM alerts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(AlertError::NotFound)?;
        self.alert_of(&row).await
    }

    async fn alert_of(&self, r: &crate::db::Row) -> Result<Alert, AlertError> {
        let id = db::uuid(r, "id")?;
        let level: String = r.try_get("level")?;
        let status: String = r.try_get("status")?;
        let transitions = sqlx::query_as::<_, (i64, String, Option<String>, String)>(
            "SELECT at, kind, level, detail FROM alert_transitions WHERE alert_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(at, kind, level, detail)| AlertTransition {
            at: text_time(at),
            kind,
            level: level.as_deref().and_then(parse_level),
            detail,
        })
        .collect();
        Ok(Alert {
            id,
            rule: r.try_get("rule")?,
            metric: r.try_get("metric")?,
            subject: r.try_get("subject")?,
            subject_name: r.try_get("subject_name")?,
            level: parse_level(&level).unwrap_or(Level::Info),
            state: match status.as_str() {
                "firing" => Status::Firing,
                "acknowledged" => Status::Acknowledged,
                _ => Status::Resolved,
            },
            cause: r.try_get("cause")?,
            value: r.try_get("value")?,
            flapping: r.try_get::<db::Flag, _>("flapping")?.0,
            started_at: text_time(r.try_get("fired_at")?),
            updated_at: text_time(r.try_get("updated_at")?),
            acknowledged_at: r
                .try_get::<Option<i64>, _>("acknowledged_at")?
                .map(text_time),
            acknowledged_by: r.try_get("acknowledged_by")?,
            resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(text_time),
            ticket_id: db::opt_uuid(r, "ticket_id")?,
            transitions,
        })
    }
}

fn parse_level(s: &str) -> Option<Level> {
    Level::ALL.into_iter().find(|l| l.as_str() == s)
}
