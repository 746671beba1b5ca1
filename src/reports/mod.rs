//! The periodic service report (seed 002: policy → collect → integrate →
//! review → publish). A report covers a period (week, month, quarter or a
//! custom range); generating it loads the records of that range
//! ([`load`]) and computes every figure with pure functions
//! ([`figures::compute`]); the figures are stored as a JSON snapshot, so a
//! report reads the same however the records change later.
//!
//! Invariants: a report is `draft` → `reviewed` → `published`, forward only;
//! the analysis texts are edited and the figures regenerated only in
//! `draft`; a published report never changes. Admins see and manage every
//! report; teachers and staff read published ones only (others are 404 to
//! them); students have no reports.
//!
//! Output: JSON (the UI's page with charts), CSV of every figure ([`csv`]),
//! PDF with an embedded, subset CJK font ([`pdf`]).

pub mod figures;
pub mod pdf;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime};
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{self, Pool};
use crate::desk::calendar::Calendar;
use crate::desk::sla::Policy;
use crate::range;
use crate::users::User;
use figures::{ClusterHour, EventRow, Figures, Inventory, NodeHour, Records, TicketRow, VmUsage};

/// The sections an admin writes analysis for, plus the improvement plan.
pub const TEXT_KEYS: [&str; 8] = [
    "summary",
    "sla",
    "incidents",
    "workload",
    "satisfaction",
    "resources",
    "service_levels",
    "plan",
];

/// The longest analysis text of one section, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;

/// The longest custom range.
pub const MAX_RANGE_DAYS: i64 = 400;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such report")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("the report is {state}; {action} needs it {needed}")]
    WrongState {
        state: &'static str,
        action: &'static str,
        needed: &'static str,
    },
    #[error("the PDF cannot be made: {0}")]
    PdfUnavailable(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Range(#[from] crate::range::RangeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Week,
    Month,
    Quarter,
    Custom,
}

impl Period {
    fn as_str(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Custom => "custom",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Period::Week, Period::Month, Period::Quarter, Period::Custom]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Draft,
    Reviewed,
    Published,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Draft => "draft",
            ReportState::Reviewed => "reviewed",
            ReportState::Published => "published",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "reviewed" => ReportState::Reviewed,
            "published" => ReportState::Published,
            _ => ReportState::Draft,
        }
    }
}

/// `POST /api/reports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    pub period: Period,
    /// RFC 3339 or `YYYY-MM-DD`. For week/month/quarter: a day inside the
    /// period (the last complete one before now when omitted).
    pub from: Option<String>,
    /// Exclusive; custom ranges only.
    pub to: Option<String>,
}

/// `PATCH /api/reports/{id}`: analysis texts to set (an empty text clears one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPatch {
    pub texts: BTreeMap<String, String>,
}

/// A report as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: Uuid,
    pub period: Period,
    pub from: String,
    pub to: String,
    pub state: ReportState,
    /// The figures, one object per section (absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<Figures>,
    pub texts: BTreeMap<String, String>,
    pub created_by: Uuid,
    pub created_at: String,
    pub generated_at: String,
    pub reviewed_at: Option<String>,
    pub published_at: Option<String>,
}

/// The report service: owns its queries and the PDF font.
#[derive(Debug)]
pub struct Reports {
    pool: Pool,
    font: Arc<pdf::FontSource>,
}

/// The `[from, to)` of a period: the one containing `anchor`, or (no anchor)
/// the last complete one before `now`. Weeks start on Monday; quarters in
/// January, April, July, October. Pure.
pub fn period_range(
    period: Period,
    anchor: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let start_of = |d: Date| -> Option<(Date, Date)> {
        Some(match period {
            Period::Week => {
                let monday = d - Duration::days(i64::from(d.weekday().number_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            Period::Month => {
                let first = d.replace_day(1).ok()?;
                let next = if d.month() == Month::December {
                    Date::from_calendar_date(d.year() + 1, Month::January, 1).ok()?
                } else {
                    Date::from_calendar_date(d.year(), d.month().next(), 1).ok()?
                };
                (first, next)
            }
            Period::Quarter => {
                let q = (u8::from(d.month()) - 1) / 3;
                let first =
                    Date::from_calendar_date(d.year(), Month::try_from(q * 3 + 1).ok()?, 1).ok()?;
                let next = if q == 3 {
                    Date::from_calendar_date(d.year() + 1, Month::January, 1).ok()?
                } else {
                    Date::from_calendar_date(d.year(), Month::try_from(q * 3 + 4).ok()?, 1).ok()?
                };
                (first, next)
            }
            Period::Custom => return None,
        })
    };
    let day = match anchor {
        Some(a) => a.to_offset(time::UtcOffset::UTC).date(),
        // The period before the one `now` is in.
        None => start_of(now.to_offset(time::UtcOffset::UTC).date())?.0 - Duration::days(1),
    };
    let (a, b) = start_of(day)?;
    Some((a.midnight().assume_utc(), b.midnight().assume_utc()))
}

fn is_admin(u: &User) -> bool {
    u.role == Role::Admin
}

fn require_admin(u: &User) -> Result<(), ReportError> {
    if is_admin(u) {
        Ok(())
    } else {
        Err(ReportError::Forbidden(
            "reports are written by admins".into(),
        ))
    }
}

/// Who may read published reports.
fn may_read(u: &User) -> bool {
    matches!(u.role, Role::Admin | Role::Teacher | Role::Staff)
}

fn check_texts(texts: &BTreeMap<String, String>) -> Result<(), ReportError> {
    for (k, v) in texts {
        if !TEXT_KEYS.contains(&k.as_str()) {
            return Err(ReportError::Invalid(format!(
                "texts: unknown section {k:?} (one of {})",
                TEXT_KEYS.join(", ")
            )));
        }
        if v.chars().count() > MAX_TEXT_CHARS {
            return Err(ReportError::Invalid(format!(
                "texts.{k}: at most {MAX_TEXT_CHARS} characters"
            )));
        }
        if v.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(ReportError::Invalid(format!(
                "texts.{k}: no control characters"
            )));
        }
    }
    Ok(())
}

impl Reports {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            font: Arc::new(pdf::FontSource::system()),
        }
    }

    /// Generates a draft over the records of the period.
    pub async fn create(&self, actor: &User, req: NewReport) -> Result<Report, ReportError> {
        require_admin(actor)?;
        let now = OffsetDateTime::now_utc();
        let from = req
            .from
            .as_deref()
            .map(|s| range::parse_bound("from", s))
            .transpose()?;
        let (from, to) = if req.period == Period::Custom {
            let (Some(from), Some(to)) = (from, req.to.as_deref()) else {
                return Err(ReportError::Invalid(
                    "a custom report needs from and to".into(),
                ));
            };
            let to = range::parse_bound("to", to)?;
            range::check(from, to, Some(MAX_RANGE_DAYS))?;
            (from, to)
        } else {
            if req.to.is_some() {
                return Err(ReportError::Invalid(
                    "to is for custom reports; a period is given by a day inside it (from)".into(),
                ));
            }
            period_range(req.period, from, now)
                .ok_or_else(|| ReportError::Invalid("from: out of range".into()))?
        };
        let figures = self.generate(from, to, now).await?;
        let id = Uuid::new_v4();
        let at = db::format_time(now);
        sqlx::query(
            "INSERT INTO reports (id, period, range_from, range_to, state, figures, texts,
                                  created_by, created_at, generated_at)
             VALUES ($1, $2, $3, $4, 'draft', $5, '{}', $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(req.period.as_str())
        .bind(db::format_time(from))
        .bind(db::format_time(to))
        .bind(serde_json::to_string(&figures)?)
        .bind(actor.id.to_string())
        .bind(&at)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        self.fetch(id).await
    }

    /// Loads the records of `[from, to)` and computes the figures.
    pub async fn generate(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Figures, ReportError> {
        let records = load(&self.pool, from, to).await?;
        Ok(figures::compute(
            &records,
            &Policy::default(),
            &Calendar::default(),
            now,
        ))
    }

    pub async fn list(&self, actor: &User) -> Result<Vec<Report>, ReportError> {
        if !may_read(actor) {
            return Err(ReportError::Forbidden(
                "reports are for admins, staff and teachers".into(),
            ));
        }
        let rows = sqlx::query(
            "SELECT * FROM reports WHERE $1 OR state = 'published'
             ORDER BY range_from DESC, created_at DESC",
        )
        .bind(is_admin(actor))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| from_row(r, false)).collect()
    }

    /// One report, as `actor` may see it (unpublished ones are 404 to non-admins).
    pub async fn get(&self, actor: &User, id: Uuid) -> Result<Report, ReportError> {
        if !may_read(actor) {
            return Err(ReportError::Forbidden(
                "reports are for admins, staff and teachers".into(),
            ));
        }
        let r = self.fetch(id).await?;
        if !is_admin(actor) && r.state != ReportState::Published {
            return Err(ReportError::NotFound);
        }
        Ok(r)
    }

    async fn fetch(&self, id: Uuid) -> Result<Report, ReportError> {
        let row = sqlx::query("SELECT * FROM reports WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ReportError::NotFound)?;
        from_row(&row, true)
    }

    async fn draft(
        &self,
        actor: &User,
        id: Uuid,
        action: &'static str,
    ) -> Result<Report, ReportError> {
        require_admin(actor)?;
        let r = self.fetch(id).await?;
        if r.state != ReportState::Draft {
            return Err(ReportError::WrongState {
                state: r.state.as_str(),
                action,
                needed: "draft",
            });
        }
        Ok(r)
    }

    /// Sets analysis texts (draft only).
    pub async fn edit(
        &self,
        actor: &User,
        id: Uuid,
        patch: ReportPatch,
    ) -> Result<Report, ReportError> {
        check_texts(&patch.texts)?;
        let mut r = self.draft(actor, id, "editing").await?;
        for (k, v) in patch.texts {
            if v.trim().is_empty() {
                r.texts.remove(&k);
            } else {
                r.texts.insert(k, v);
            }
        }
        // The state check again in the UPDATE: a publish in between wins.
        let done = sqlx::query("UPDATE reports SET texts = $1 WHERE id = $2 AND state = 'draft'")
            .bind(serde_json::to_string(&r.texts)?)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        self.after_update(id, done.rows_affected(), "editing", "draft")
            .await
    }

    /// Recomputes the figures from the current records (draft only).
    pub async fn regenerate(&self, actor: &User, id: Uuid) -> Result<Report, ReportError> {
        let r = self.draft(actor, id, "regenerating").await?;
        let now = OffsetDateTime::now_utc();
        let (from, to) = (
            range::parse_bound("from", &r.from)?,
            range::parse_bound("to", &r.to)?,
        );
        let figures = self.generate(from, to, now).await?;
        let done = sqlx::query(
            "UPDATE reports SET figures = $1, generated_at = $2 WHERE id = $3 AND state = 'draft'",
        )
        .bind(serde_json::to_string(&figures)?)
        .bind(db::format_time(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        self.after_update(id, done.rows_affected(), "regenerating", "draft")
            .await
    }

    /// draft → reviewed.
    pub async fn review(&self, actor: &User, id: Uuid) -> Result<Report, ReportError> {
        self.advance(
            actor,
            id,
            ReportState::Draft,
            ReportState::Reviewed,
            "review",
        )
        .await
    }

    /// reviewed → published (then immutable, and readable by teachers and staff).
    pub async fn publish(&self, actor: &User, id: Uuid) -> Result<Report, ReportError> {
        self.advance(
            actor,
            id,
            ReportState::Reviewed,
            ReportState::Published,
            "publishing",
        )
        .await
    }

    async fn advance(
        &self,
        actor: &User,
        id: Uuid,
        from: ReportState,
        to: ReportState,
        action: &'static str,
    ) -> Result<Report, ReportError> {
        require_admin(actor)?;
        let (who, when) = match to {
            ReportState::Published => ("published_by", "published_at"),
            _ => ("reviewed_by", "reviewed_at"),
        };
        let done = sqlx::query(&format!(
            "UPDATE reports SET state = $1, {who} = $2, {when} = $3 WHERE id = $4 AND state = $5"
        ))
        .bind(to.as_str())
        .bind(actor.id.to_string())
        .bind(db::now())
        .bind(id.to_string())
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        self.after_update(id, done.rows_affected(), action, from.as_str())
            .await
    }

    /// The report after an UPDATE guarded by its state: 404 if it is gone,
    /// 409 if it was not in `needed`.
    async fn after_update(
        &self,
        id: Uuid,
        rows: u64,
        action: &'static str,
        needed: &'static str,
    ) -> Result<Report, ReportError> {
        let r = self.fetch(id).await?;
        if rows == 0 {
            return Err(ReportError::WrongState {
                state: r.state.as_str(),
                action,
                needed,
            });
        }
        Ok(r)
    }

    /// Every figure as CSV (`section,figure,key,value`).
    pub async fn csv(&self, actor: &User, id: Uuid) -> Result<(Report, Vec<u8>), ReportError> {
        let r = self.get(actor, id).await?;
        let bytes = csv_bytes(r.sections.as_ref().ok_or(ReportError::NotFound)?);
        Ok((r, bytes))
    }

    /// The report as a PDF in `lang` (`en` or `zh-CN`).
    pub async fn pdf(
        &self,
        actor: &User,
        id: Uuid,
        lang: pdf::Lang,
    ) -> Result<(Report, Vec<u8>), ReportError> {
        let r = self.get(actor, id).await?;
        let font = self.font.clone();
        let report = r.clone();
        let bytes = tokio::task::spawn_blocking(move || pdf::render(&report, &font, lang))
            .await
            .map_err(|e| ReportError::PdfUnavailable(e.to_string()))??;
        Ok((r, bytes))
    }
}

/// The CSV of `figures`: a header, then one row per figure. Cells that a
/// spreadsheet would take for a formula are prefixed with `'`.
pub fn csv_bytes(figures: &Figures) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let safe = |s: &str| -> String {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
            format!("'{s}")
        } else {
            s.to_owned()
        }
    };
    // Writing to a Vec cannot fail.
    let _ = w.write_record(["section", "figure", "key", "value"]);
    for (s, f, k, v) in figures.csv_rows() {
        let _ = w.write_record([s, &f, &safe(&k), &safe(&v)]);
    }
    w.into_inner().unwrap_or_default()
}

fn from_row(row: &crate::db::Row, with_figures: bool) -> Result<Report, ReportError> {
    let period: String = row.try_get("period")?;
    let state: String = row.try_get("state")?;
    let texts: String = row.try_get("texts")?;
    let sections = if with_figures {
        let f: String = row.try_get("figures")?;
        Some(serde_json::from_str(&f)?)
    } else {
        None
    };
    Ok(Report {
        id: db::uuid(row, "id")?,
        period: Period::parse(&period).unwrap_or(Period::Custom),
        from: row.try_get("range_from")?,
        to: row.try_get("range_to")?,
        state: ReportState::parse(&state),
        sections,
        texts: serde_json::from_str(&texts)?,
        created_by: db::uuid(row, "created_by")?,
        created_at: row.try_get("created_at")?,
        generated_at: row.try_get("generated_at")?,
        reviewed_at: row.try_get("reviewed_at")?,
        published_at: row.try_get("published_at")?,
    })
}

fn ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Loads the records of `[from, to)` (see [`Records`]).
pub async fn load(
    pool: &Pool,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Records, ReportError> {
    let (f, t) = (db::format_time(from), db::format_time(to));
    let rows = sqlx::query(
        "SELECT t.number, t.kind, t.title, t.priority, t.channel, t.state, t.created_at,
                t.responded_at, t.resolved_at, t.closed_at, t.rating, t.resolution, t.reopen_count,
                COALESCE(NULLIF(u.display_name, ''), u.username) AS assignee
         FROM tickets t LEFT JOIN users u ON u.id = t.assignee_id
         WHERE t.created_at >= $1 AND t.created_at < $2 ORDER BY t.number",
    )
    .bind(&f)
    .bind(&t)
    .fetch_all(pool)
    .await?;
    let mut tickets = Vec::with_capacity(rows.len());
    for r in &rows {
        let opt = |c: &str| -> Result<Option<OffsetDateTime>, sqlx::Error> {
            Ok(r.try_get::<Option<String>, _>(c)?.as_deref().and_then(ts))
        };
        let Some(created_at) = ts(&r.try_get::<String, _>("created_at")?) else {
            continue;
        };
        tickets.push(TicketRow {
            number: r.try_get("number")?,
            kind: r.try_get("kind")?,
            title: r.try_get("title")?,
            priority: r.try_get("priority")?,
            channel: r.try_get("channel")?,
            state: r.try_get("state")?,
            created_at,
            responded_at: opt("responded_at")?,
            resolved_at: opt("resolved_at")?,
            closed_at: opt("closed_at")?,
            assignee: r.try_get("assignee")?,
            rating: r.try_get("rating")?,
            resolution: r.try_get("resolution")?,
            reopen_count: r.try_get("reopen_count")?,
        });
    }
    // Node state changes from before the range too (the event log keeps 90
    // days), so a node that was down when the range began counts as down.
    let since = db::format_time(from - Duration::days(crate::events::RETENTION_DAYS));
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT at, kind, COALESCE(node_name, node_id) FROM events
         WHERE at < $2 AND (
             (kind IN ('node_down', 'node_up') AND at >= $3)
             OR (kind = 'vm_start_failed' AND at >= $1))
         ORDER BY at, id",
    )
    .bind(&f)
    .bind(&t)
    .bind(&since)
    .fetch_all(pool)
    .await?;
    let events = rows
        .into_iter()
        .filter_map(|(at, kind, node)| {
            Some(EventRow {
                at: ts(&at)?,
                kind,
                node,
            })
        })
        .collect();
    // Samples go with their node (ON DELETE CASCADE), so every row is
    // reached from `nodes`. Node by node, each range is a slice of the
    // WITHOUT ROWID table's primary key (node_id, at): `CROSS JOIN` keeps
    // nodes outside, `NOT INDEXED` keeps SQLite from the `at` index, whose
    // every hit would be one more lookup into the table (5× slower over a
    // quarter). The same holds for VM samples below.
    // Per node and hour, the same grouping as `figures::aggregate_minutes`.
    let rows = sqlx::query(&db::index_hints(
        pool,
        "SELECT COALESCE(n.name, s.node_id) AS node, s.at / 3600 * 3600 AS hour,
                COALESCE(SUM(s.cpu_percent), 0.0) AS cpu_sum, COUNT(s.cpu_percent) AS cpu_n,
                MAX(s.cpu_percent) AS cpu_max,
                CAST(COALESCE(SUM(CASE WHEN s.mem_total_mib > 0
                    THEN 100.0 * s.mem_used_mib / s.mem_total_mib END), 0.0) AS DOUBLE PRECISION) AS mem_sum,
                CAST(COALESCE(SUM(CASE WHEN s.mem_total_mib > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS mem_n,
                CAST(MAX(CASE WHEN s.mem_total_mib > 0
                    THEN 100.0 * s.mem_used_mib / s.mem_total_mib END) AS DOUBLE PRECISION) AS mem_max,
                MAX(s.vms_running) AS vms_max
         FROM nodes n CROSS JOIN node_samples_minute s NOT INDEXED
         WHERE s.node_id = n.id AND s.at >= $1 AND s.at < $2
         GROUP BY s.node_id, n.name, hour",
    ))
    .bind(from.unix_timestamp())
    .bind(to.unix_timestamp())
    .fetch_all(pool)
    .await?;
    let node_hours = rows
        .iter()
        .map(|r| {
            Ok(NodeHour {
                node: r.try_get("node")?,
                hour: r.try_get("hour")?,
                cpu_sum: r.try_get("cpu_sum")?,
                cpu_n: r.try_get("cpu_n")?,
                cpu_max: r.try_get("cpu_max")?,
                mem_sum: r.try_get("mem_sum")?,
                mem_n: r.try_get("mem_n")?,
                mem_max: r.try_get("mem_max")?,
                vms_max: r.try_get("vms_max")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let cluster_hours = sqlx::query_as::<_, (i64, i64)>(&db::index_hints(
        pool,
        "SELECT minute / 3600 * 3600 AS hour, MAX(vms) FROM (
             SELECT s.at / 60 * 60 AS minute, CAST(SUM(s.vms_running) AS BIGINT) AS vms
             FROM nodes n CROSS JOIN node_samples_minute s NOT INDEXED
             WHERE s.node_id = n.id AND s.at >= $1 AND s.at < $2 GROUP BY minute) AS minutes
         GROUP BY hour ORDER BY hour",
    ))
    .bind(from.unix_timestamp())
    .bind(to.unix_timestamp())
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(hour, vms_peak)| ClusterHour { hour, vms_peak })
    .collect();
    // VM hours from the power history (kept for good), not the load
    // samples (kept 8 days): a quarter's report counts every hour.
    let vm_usage = crate::usage::minutes_by_vm(pool, from, to)
        .await?
        .into_iter()
        .map(|(course, minutes)| VmUsage { course, minutes })
        .collect();
    let inv = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM nodes) AS nodes,
                (SELECT COUNT(*) FROM courses) AS courses,
                (SELECT COUNT(DISTINCT user_id) FROM enrolments) AS students,
                (SELECT COUNT(*) FROM vms) AS vms,
                (SELECT COUNT(*) FROM templates) AS templates,
                (SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM templates) AS template_bytes",
    )
    .fetch_one(pool)
    .await?;
    Ok(Records {
        from,
        to,
        tickets,
        events,
        node_hours,
        cluster_hours,
        vm_usage,
        class_prestarts: crate::slo::load_prestarts(
            pool,
            from.unix_timestamp() * 1000,
            to.unix_timestamp() * 1000,
        )
        .await?,
        inventory: Inventory {
            nodes: inv.try_get("nodes")?,
            courses: inv.try_get("courses")?,
            students: inv.try_get("students")?,
            vms: inv.try_get("vms")?,
            templates: inv.try_get("templates")?,
            template_store_bytes: inv.try_get("template_bytes")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn periods() {
        // RFC 3339, or a day for its midnight UTC.
        let at = |s: &str| crate::range::parse_bound("at", s).expect("time");
        let now = "2026-03-04T12:00:00Z";
        // (period, anchor, now, [from, to)): the week of a Wednesday; without
        // an anchor the last complete period before `now`.
        let cases = [
            (Period::Week, Some(now), now, "2026-03-02", "2026-03-09"),
            (Period::Week, None, now, "2026-02-23", "2026-03-02"),
            (Period::Month, None, now, "2026-02-01", "2026-03-01"),
            (
                Period::Month,
                None,
                "2026-01-15",
                "2025-12-01",
                "2026-01-01",
            ),
            (
                Period::Quarter,
                Some("2026-11-20"),
                now,
                "2026-10-01",
                "2027-01-01",
            ),
            (Period::Quarter, None, now, "2025-10-01", "2026-01-01"),
        ];
        for (period, anchor, now, from, to) in cases {
            assert_eq!(
                period_range(period, anchor.map(at), at(now)),
                Some((at(from), at(to))),
                "{period:?} {anchor:?} at {now}"
            );
        }
        assert_eq!(period_range(Period::Custom, None, at(now)), None);
    }

    #[test]
    fn texts_are_checked() {
        let t = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(check_texts(&t("plan", "第一行\n第二行")).is_ok());
        assert!(check_texts(&t("nonsense", "x")).is_err());
        assert!(check_texts(&t("plan", "bell \u{7}")).is_err());
        assert!(check_texts(&t("plan", &"x".repeat(MAX_TEXT_CHARS + 1))).is_err());
    }

    #[test]
    fn csv_cells_are_not_formulas() {
        let mut f = figures::compute(
            &figures::tests::week(),
            &figures::tests::policy(),
            &Calendar::default(),
            datetime!(2026-03-10 00:00 UTC),
        );
        f.incidents.major[0].title = "=HYPERLINK(\"x\")".into();
        let text = String::from_utf8(csv_bytes(&f)).expect("utf-8");
        assert!(text.starts_with("section,figure,key,value\n"));
        assert!(text.contains("'=HYPERLINK"));
        assert!(text.contains("sla,response_compliance,,0.6\n"));
    }
}
