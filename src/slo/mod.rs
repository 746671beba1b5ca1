//! Service levels: indicators measured from pvce's own records, objectives
//! with error budgets, and the service status every user can see.
//!
//! - [`record`] writes the facts as they happen: every VM start attempt
//!   (from the VM lifecycle) and every console token and session (from the
//!   console proxy). Recording never fails the user's action.
//! - [`compute`] turns loaded rows into indicators, objectives (target,
//!   actual, budget left, burn rate) and status levels — pure, unit-tested;
//!   the definitions are in its module doc.
//! - [`provisioning`]: class provisioning time (a session's pre-start to
//!   its last VM usable), from what the class-time loop records.
//! - [`exposition`]: what `/metrics` exports (start outcomes, burn rates).
//! - [`Slo`] loads the rows of a window (plus the event log's node
//!   transitions and the per-minute node samples), keeps the targets admins
//!   set (`slo_targets`, `slo_settings`) and answers `GET /api/slo`,
//!   `PUT /api/slo/targets` and `GET /api/status`.
//!
//! Invariants: an indicator without a stored target has its default
//! ([`compute::Indicator::default_target`]); a stored target is always
//! valid ([`compute::Indicator::valid`]); the status page shows open system
//! incidents by title only.

pub mod compute;
pub mod exposition;
pub mod provisioning;
pub mod record;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::range;
use crate::users::User;
pub use compute::EndedBy;
use compute::{
    Figures, Indicator, Inputs, Level, NodeTransition, Objective, SessionRow, StartRow, Unit,
    Window,
};
pub use record::{ConsoleFact, ConsoleRecorder};

/// The default SLO period.
pub const DEFAULT_PERIOD_DAYS: u32 = 28;
/// The longest range `GET /api/slo` computes over.
pub const MAX_RANGE_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// A malformed query (dates).
    #[error("{0}")]
    BadQuery(String),
    /// A student asked for the SLO figures.
    #[error("the service levels are for teachers, staff and admins")]
    Forbidden,
    /// A well-formed target or period outside what is allowed.
    #[error("{0}")]
    InvalidTarget(String),
    #[error(transparent)]
    Range(#[from] crate::range::RangeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloQuery {
    /// RFC 3339 or `YYYY-MM-DD`; the period before `to` when omitted.
    pub from: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (exclusive); now when omitted.
    pub to: Option<String>,
}

/// `GET /api/slo`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub period_days: u32,
    pub wanted_window_minutes: i64,
    pub objectives: Vec<Objective>,
    pub figures: Figures,
    /// Course id → code, for `figures.availability.per_course`.
    pub courses: BTreeMap<String, String>,
    /// The layer storage and each node's template store: use now and days
    /// until full (admins and staff; empty for a teacher).
    pub capacity: Vec<compute::Capacity>,
    /// Class provisioning time of the sessions that began in the range
    /// (a teacher: their courses').
    pub provisioning: provisioning::ProvisioningFigures,
}

/// `PUT /api/slo/targets`: what to change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsUpdate {
    pub period_days: Option<u32>,
    #[serde(default)]
    pub targets: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub indicator: Indicator,
    pub unit: Unit,
    pub target: f64,
    pub default_target: f64,
}

/// The targets and period in force.
#[derive(Debug, Serialize)]
pub struct Targets {
    pub period_days: u32,
    pub targets: Vec<TargetView>,
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    /// `consoles`, `vm_start`, `nodes` or `desk`.
    pub service: &'static str,
    pub level: Level,
}

/// An open system incident, as anyone may see it.
#[derive(Debug, Serialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub priority: String,
    pub opened_at: String,
}

/// `GET /api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub at: String,
    /// The worst of the services.
    pub level: Level,
    pub services: Vec<ServiceStatus>,
    pub incidents: Vec<Incident>,
}

/// The service levels service.
#[derive(Debug)]
pub struct Slo {
    pool: Pool,
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn opt_uuid(s: Option<String>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(&s).ok())
}

impl crate::alerts::samples::SignalSource for Slo {
    fn signals(
        &self,
        now_ms: i64,
    ) -> futures::future::BoxFuture<'_, Result<crate::alerts::samples::ServiceSignals, sqlx::Error>>
    {
        Box::pin(async move {
            let s = self.alert_signals(now_ms).await?;
            Ok(crate::alerts::samples::ServiceSignals {
                console_error_percent: s.console_error_percent,
                start_failure_percent: s.start_failure_percent,
                burn_rates: s
                    .burn_rates
                    .into_iter()
                    .map(|(i, b)| (i.as_str(), b))
                    .collect(),
            })
        })
    }
}

impl Slo {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The indicators and objectives over `q`'s range (default: the SLO
    /// period up to `now`) as `viewer` may see them: admins and staff the
    /// whole service; a teacher their courses only (starts and consoles of
    /// those courses' VMs; no node figures, no cluster-wide peaks).
    pub async fn report(
        &self,
        viewer: &User,
        q: &SloQuery,
        now: OffsetDateTime,
    ) -> Result<Report, SloError> {
        let period_days = self.period_days().await?;
        let to = match &q.to {
            Some(s) => range::parse_bound("to", s)?,
            None => now,
        };
        let from = match &q.from {
            Some(s) => range::parse_bound("from", s)?,
            None => to - time::Duration::days(i64::from(period_days)),
        };
        range::check(from, to, Some(MAX_RANGE_DAYS))?;
        let w = Window {
            from_ms: ms(from),
            to_ms: ms(to),
        };
        let targets = self.target_map().await?;
        let p95_ms = p95_target_ms(&targets);
        let mut inputs = self.load(w).await?;
        let scope = self.scope(viewer).await?;
        if let Some((courses, vms)) = &scope {
            inputs
                .starts
                .retain(|s| s.course_id.is_some_and(|c| courses.contains(&c)));
            inputs.sessions.retain(|s| vms.contains(&s.vm_id));
            inputs.nodes.clear();
            inputs.vm_samples.clear();
            // The desk's figures are the whole service's, not a course's.
            inputs.ticket_response = compute::TicketResponse::default();
        }
        let period = compute::figures(&inputs, w, p95_ms);
        let hour_w = w.last_hour();
        let hour = compute::figures(&inputs, hour_w, p95_ms);
        let six_w = w.last(6 * compute::HOUR_MS);
        let six = compute::figures(&inputs, six_w, p95_ms);
        let measured = |figures, w: Window| compute::Measured {
            figures,
            window_ms: w.len_ms(),
        };
        let objectives = compute::objectives(
            measured(&period, w),
            measured(&hour, hour_w),
            measured(&six, six_w),
            &targets,
        );
        let rows = sqlx::query("SELECT id, code FROM courses")
            .fetch_all(&self.pool)
            .await?;
        let courses = rows
            .iter()
            .filter_map(|r| Some((r.try_get::<String, _>("id").ok()?, r.try_get("code").ok()?)))
            .filter(|(id, _)| {
                scope.as_ref().is_none_or(|(courses, _)| {
                    Uuid::parse_str(id).is_ok_and(|c| courses.contains(&c))
                })
            })
            .collect();
        let mut prestarts = self.prestarts(w).await?;
        if let Some((courses, _)) = &scope {
            prestarts.retain(|p| courses.contains(&p.course_id));
        }
        let capacity = if scope.is_none() {
            self.capacity(now.unix_timestamp()).await?
        } else {
            Vec::new()
        };
        Ok(Report {
            capacity,
            provisioning: provisioning::figures(&prestarts),
            from: db::format_time(from),
            to: db::format_time(to),
            period_days,
            wanted_window_minutes: compute::WANTED_WINDOW_MS / compute::MINUTE_MS,
            objectives,
            figures: period,
            courses,
        })
    }

    /// Each service's level now and the open system incidents.
    pub async fn status(&self, now: OffsetDateTime) -> Result<Status, SloError> {
        let w = Window {
            from_ms: ms(now) - compute::HOUR_MS,
            to_ms: ms(now),
        };
        let targets = self.target_map().await?;
        let inputs = self.load(w).await?;
        let f = compute::figures(&inputs, w, p95_target_ms(&targets));
        let burn_level = |i: Indicator| {
            let target = targets.get(&i).copied().unwrap_or(i.default_target());
            compute::level_from_burn(compute::burn_rate(
                compute::tally(i, &f, w.len_ms()),
                i.allowed_bad(target),
            ))
        };
        let states: Vec<(String,)> = sqlx::query_as("SELECT state FROM nodes")
            .fetch_all(&self.pool)
            .await?;
        let down = states.iter().filter(|(s,)| s == "down").count();
        let rows = sqlx::query(
            "SELECT id, title, priority, created_at FROM tickets
             WHERE channel = 'system' AND state NOT IN ('resolved', 'closed')
             ORDER BY created_at DESC LIMIT 50",
        )
        .fetch_all(&self.pool)
        .await?;
        let incidents = rows
            .iter()
            .map(|r| {
                Ok(Incident {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    priority: r.try_get("priority")?,
                    opened_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let priorities: Vec<String> = incidents.iter().map(|i| i.priority.clone()).collect();
        let services = vec![
            ServiceStatus {
                service: "consoles",
                level: burn_level(Indicator::ConsoleSuccess),
            },
            ServiceStatus {
                service: "vm_start",
                level: burn_level(Indicator::StartSuccess),
            },
            ServiceStatus {
                service: "nodes",
                level: compute::node_level(down, states.len()),
            },
            ServiceStatus {
                service: "desk",
                // Open incidents, and tickets answered late.
                level: compute::desk_level(&priorities).max(burn_level(Indicator::TicketResponse)),
            },
        ];
        Ok(Status {
            at: db::format_time(now),
            level: services
                .iter()
                .map(|s| s.level)
                .max()
                .unwrap_or(Level::Green),
            services,
            incidents,
        })
    }

    /// The alert loop's signals at `now_ms` (Unix milliseconds): the
    /// last hour's figures, as the status page computes them.
    pub async fn alert_signals(&self, now_ms: i64) -> Result<compute::AlertSignals, sqlx::Error> {
        let w = Window {
            from_ms: now_ms - compute::HOUR_MS,
            to_ms: now_ms,
        };
        let targets = self.target_map().await?;
        let inputs = self.load(w).await?;
        let f = compute::figures(&inputs, w, p95_target_ms(&targets));
        Ok(compute::alert_signals(&f, w.len_ms(), &targets))
    }

    /// The targets and period in force.
    pub async fn targets(&self) -> Result<Targets, SloError> {
        let map = self.target_map().await?;
        Ok(Targets {
            period_days: self.period_days().await?,
            targets: Indicator::ALL
                .into_iter()
                .map(|i| TargetView {
                    indicator: i,
                    unit: i.unit(),
                    target: map.get(&i).copied().unwrap_or(i.default_target()),
                    default_target: i.default_target(),
                })
                .collect(),
        })
    }

    /// Sets targets and/or the period (all checked before any is written).
    pub async fn set_targets(&self, by: &str, update: &TargetsUpdate) -> Result<Targets, SloError> {
        let mut checked = Vec::new();
        for (name, &value) in &update.targets {
            let i = Indicator::parse(name)
                .ok_or_else(|| SloError::InvalidTarget(format!("unknown indicator {name:?}")))?;
            if !i.valid(value) {
                let range = match i.unit() {
                    Unit::Ratio => "0.5 to 0.99999",
                    Unit::Seconds => "1 to 3600 seconds",
                };
                return Err(SloError::InvalidTarget(format!(
                    "{name}: the target must be {range}"
                )));
            }
            checked.push((i, value));
        }
        if let Some(d) = update.period_days
            && !(1..=366).contains(&d)
        {
            return Err(SloError::InvalidTarget(
                "period_days must be 1 to 366".into(),
            ));
        }
        let mut tx = db::begin(&self.pool).await?;
        for (i, value) in checked {
            sqlx::query(
                "INSERT INTO slo_targets (indicator, target, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (indicator) DO UPDATE SET target = excluded.target,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .bind(i.as_str())
            .bind(value)
            .bind(db::now())
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(d) = update.period_days {
            sqlx::query(
                "INSERT INTO slo_settings (id, period_days) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET period_days = excluded.period_days",
            )
            .bind(i64::from(d))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let detail =
            serde_json::json!({ "targets": update.targets, "period_days": update.period_days });
        crate::audit::settings_changed(
            &self.pool,
            crate::audit::actor_named(&self.pool, by).await,
            crate::audit::Action::SettingsServiceLevels,
            "service_levels",
            detail,
        )
        .await;
        self.targets().await
    }

    /// `None`: the whole service; otherwise the courses (and their VMs) a
    /// teacher sees. Students see nothing here ([`SloError::Forbidden`]).
    async fn scope(
        &self,
        viewer: &User,
    ) -> Result<Option<(HashSet<Uuid>, HashSet<Uuid>)>, SloError> {
        match viewer.role {
            Role::Admin | Role::Staff => Ok(None),
            Role::Student => Err(SloError::Forbidden),
            Role::Teacher => {
                let courses: Vec<(String,)> =
                    sqlx::query_as("SELECT id FROM courses WHERE teacher_id = $1")
                        .bind(viewer.id.to_string())
                        .fetch_all(&self.pool)
                        .await?;
                let vms: Vec<(String,)> = sqlx::query_as(
                    "SELECT v.id FROM vms v JOIN courses c ON c.id = v.course_id WHERE c.teacher_id = $1",
                )
                .bind(viewer.id.to_string())
                .fetch_all(&self.pool)
                .await?;
                let ids = |rows: Vec<(String,)>| {
                    rows.into_iter()
                        .filter_map(|(s,)| Uuid::parse_str(&s).ok())
                        .collect::<HashSet<Uuid>>()
                };
                Ok(Some((ids(courses), ids(vms))))
            }
        }
    }

    async fn period_days(&self) -> Result<u32, SloError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT period_days FROM slo_settings WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .and_then(|(d,)| u32::try_from(d).ok())
            .unwrap_or(DEFAULT_PERIOD_DAYS))
    }

    async fn target_map(&self) -> Result<BTreeMap<Indicator, f64>, sqlx::Error> {
        let rows: Vec<(String, f64)> = sqlx::query_as("SELECT indicator, target FROM slo_targets")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, t)| Some((Indicator::parse(&name)?, t)))
            .collect())
    }

    /// The layer storage's and the template stores' use and forecasts
    /// at `now_s`, from the use the alert loop records (`alert_samples`).
    async fn capacity(&self, now_s: i64) -> Result<Vec<compute::Capacity>, sqlx::Error> {
        let from = now_s - crate::alerts::forecast::TREND_WINDOW_SECS;
        let points = |series: &'static str, subject: String| {
            let pool = self.pool.clone();
            async move { crate::alerts::samples::recorded(&pool, series, &subject, from, now_s).await }
        };
        let mut out = vec![compute::capacity(
            "layer_storage",
            String::new(),
            &points("layer_storage", "site".into()).await?,
            now_s,
        )];
        let nodes: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        for (id, name) in nodes {
            out.push(compute::capacity(
                "store",
                name,
                &points("store", id).await?,
                now_s,
            ));
        }
        Ok(out)
    }

    /// The class pre-starts of the sessions that began in `w`, with their VMs.
    async fn prestarts(&self, w: Window) -> Result<Vec<provisioning::PrestartRow>, sqlx::Error> {
        load_prestarts(&self.pool, w.from_ms, w.to_ms).await
    }

    /// The desk's response clocks of the tickets created in `w`.
    async fn ticket_response(&self, w: Window) -> Result<compute::TicketResponse, sqlx::Error> {
        let response =
            crate::desk::stats::sla_compliance(&self.pool, from_ms(w.from_ms), from_ms(w.to_ms))
                .await?
                .response;
        Ok(compute::TicketResponse {
            met: response.met,
            breached: response.breached,
        })
    }

    /// What `/metrics` exports of the service levels at `now_ms` (Unix
    /// milliseconds; see [`exposition`]): all start attempts ever recorded,
    /// the targets, and each objective's burn rate over each of
    /// [`exposition::BURN_WINDOWS`] ending at `now_ms`.
    pub async fn exposition(&self, now_ms: i64) -> Result<exposition::Exposition, sqlx::Error> {
        let outcomes = sqlx::query(
            "SELECT outcome, error_code, COUNT(*) AS n FROM slo_vm_starts GROUP BY outcome, error_code",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(exposition::OutcomeCount {
                ok: r.try_get::<String, _>("outcome")? == "ok",
                error_code: r.try_get("error_code")?,
                count: r.try_get("n")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // The SQL is built from the bucket constants only.
        let buckets = sqlx::query(&format!(
            "SELECT {} AS b, COUNT(*) AS n, CAST(SUM(d) AS BIGINT) AS s FROM
             (SELECT CASE WHEN running_ms > requested_ms THEN running_ms - requested_ms ELSE 0 END AS d
              FROM slo_vm_starts WHERE outcome = 'ok' AND running_ms IS NOT NULL) AS starts
             GROUP BY b",
            exposition::bucket_case_sql()
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(exposition::BucketCount {
                bucket: r.try_get("b")?,
                count: r.try_get("n")?,
                sum_ms: r.try_get("s")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let targets = self.target_map().await?;
        let p95_ms = p95_target_ms(&targets);
        // One load for the longest window; the shorter ones are its tails.
        // Only the desk's figures are per window in the loaded rows.
        let longest = Window {
            from_ms: now_ms - exposition::LONGEST_BURN_WINDOW_MS,
            to_ms: now_ms,
        };
        let mut inputs = self.load(longest).await?;
        let mut burn = Vec::new();
        for (window, len_ms) in exposition::BURN_WINDOWS {
            let w = longest.last(len_ms);
            inputs.ticket_response = self.ticket_response(w).await?;
            let f = compute::figures(&inputs, w, p95_ms);
            for (indicator, rate) in compute::burn_rates(&f, w.len_ms(), &targets) {
                if let Some(rate) = rate {
                    burn.push(exposition::WindowBurn {
                        window,
                        indicator,
                        rate,
                    });
                }
            }
        }
        Ok(exposition::Exposition {
            starts: exposition::start_totals(&outcomes, &buckets),
            targets: Indicator::ALL
                .into_iter()
                .map(|i| (i, targets.get(&i).copied().unwrap_or(i.default_target())))
                .collect(),
            burn,
        })
    }

    /// The rows the indicators over `w` need.
    async fn load(&self, w: Window) -> Result<Inputs, sqlx::Error> {
        let starts = sqlx::query(
            "SELECT vm_id, course_id, node_id, requested_ms, outcome, error_code, running_ms,
             first_frame_ms FROM slo_vm_starts WHERE requested_ms >= $1 AND requested_ms < $2",
        )
        .bind(w.from_ms - compute::WANTED_WINDOW_MS)
        .bind(w.to_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StartRow {
                vm_id: db::uuid(r, "vm_id")?,
                course_id: opt_uuid(r.try_get("course_id")?),
                node_id: opt_uuid(r.try_get("node_id")?),
                requested_ms: r.try_get("requested_ms")?,
                ok: r.try_get::<String, _>("outcome")? == "ok",
                error_code: r.try_get("error_code")?,
                running_ms: r.try_get("running_ms")?,
                first_frame_ms: r.try_get("first_frame_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // Sessions of a day before the window may still run into it.
        let sessions = sqlx::query(
            "SELECT vm_id, node_id, issued_ms, opened_ms, established_ms, ended_ms, ended_by
             FROM slo_console_sessions WHERE issued_ms >= $1 AND issued_ms < $2",
        )
        .bind(w.from_ms - 24 * compute::HOUR_MS)
        .bind(w.to_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(SessionRow {
                vm_id: db::uuid(r, "vm_id")?,
                node_id: opt_uuid(r.try_get("node_id")?),
                issued_ms: r.try_get("issued_ms")?,
                opened_ms: r.try_get("opened_ms")?,
                established_ms: r.try_get("established_ms")?,
                ended_ms: r.try_get("ended_ms")?,
                ended_by: r
                    .try_get::<Option<String>, _>("ended_by")?
                    .as_deref()
                    .and_then(EndedBy::parse),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // `at` has whole seconds: `<=` keeps an event of the window's last
        // second (the pure code compares in milliseconds).
        let events: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT node_id, at, kind FROM events
             WHERE kind IN ('node_down', 'node_up') AND node_id IS NOT NULL AND at <= $1",
        )
        .bind(db::format_time(from_ms(w.to_ms)))
        .fetch_all(&self.pool)
        .await?;
        let transitions = events
            .into_iter()
            .filter_map(|(node, at, kind)| {
                Some(NodeTransition {
                    node_id: Uuid::parse_str(&node).ok()?,
                    at_ms: ms(OffsetDateTime::parse(&at, &Rfc3339).ok()?),
                    down: kind == "node_down",
                })
            })
            .collect();
        let nodes: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let samples: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT node_id, at, vms_running FROM node_samples_minute WHERE at >= $1 AND at < $2",
        )
        .bind(w.from_ms.div_euclid(1000))
        .bind(w.to_ms.div_euclid(1000) + 1)
        .fetch_all(&self.pool)
        .await?;
        Ok(Inputs {
            ticket_response: self.ticket_response(w).await?,
            starts,
            sessions,
            transitions,
            nodes: nodes
                .into_iter()
                .filter_map(|(id, name)| Some((Uuid::parse_str(&id).ok()?, name)))
                .collect(),
            vm_samples: samples
                .into_iter()
                .filter_map(|(n, at, v)| Some((Uuid::parse_str(&n).ok()?, at * 1000, v)))
                .collect(),
        })
    }
}

/// The class pre-starts of the sessions that began in `[from_ms, to_ms)`,
/// with their VMs (also for the periodic report).
pub async fn load_prestarts(
    pool: &Pool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<provisioning::PrestartRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.id, p.course_id, p.session_start_ms, p.prestart_ms, v.ready_ms, v.failed_ms
         FROM slo_class_prestarts p JOIN slo_class_prestart_vms v ON v.prestart_id = p.id
         WHERE p.session_start_ms >= $1 AND p.session_start_ms < $2 ORDER BY p.id",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<(String, provisioning::PrestartRow)> = Vec::new();
    for r in &rows {
        let id: String = r.try_get("id")?;
        let vm = provisioning::PrestartVm {
            ready_ms: r.try_get("ready_ms")?,
            failed_ms: r.try_get("failed_ms")?,
        };
        match out.last_mut() {
            Some((last, p)) if *last == id => p.vms.push(vm),
            _ => out.push((
                id,
                provisioning::PrestartRow {
                    course_id: db::uuid(r, "course_id")?,
                    session_start_ms: r.try_get("session_start_ms")?,
                    prestart_ms: r.try_get("prestart_ms")?,
                    vms: vec![vm],
                },
            )),
        }
    }
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

fn p95_target_ms(targets: &BTreeMap<Indicator, f64>) -> i64 {
    let s = targets
        .get(&Indicator::StartP95)
        .copied()
        .unwrap_or(Indicator::StartP95.default_target());
    (s * 1000.0).round() as i64
}
