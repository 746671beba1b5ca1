//! The audit log: who did what to what, when, from where, and whether it
//! worked — for every security-relevant action (sign-ins and their
//! failures, role changes, disabling users, password resets, VM power
//! actions, console opens, layer export/import, collections, template seal
//! and delete, settings changes).
//!
//! Invariants:
//! - Append-only. The table's triggers (migration 0028) refuse every UPDATE
//!   and any DELETE of an entry at or after the prune horizon; the horizon
//!   only moves forward, and only [`Audit::prune`] moves it (retention).
//! - Entries are written by the domain services that do the action (one
//!   place each), never by HTTP handlers; the actor is passed in
//!   explicitly, the client address comes from the request being served
//!   ([`context`]). Recording needs only the database, so a service records
//!   with [`record`] on its own pool and the wiring stays unchanged; the
//!   [`Audit`] service in the app state reads and prunes.
//! - A failed write of an entry is logged, not turned into a failure of the
//!   action it describes (which has already happened); where the change and
//!   its entry must go together, [`record_in`] writes inside the change's
//!   transaction.
//! - The actor's and target's names are stored as they were then: entries
//!   outlive renamed and removed accounts (no foreign keys).
//! - Nothing secret is recorded: no passwords, tokens or cookies.

pub mod action;
pub mod context;
pub mod retention;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{self, Pool};
pub use action::{Action, Outcome, TargetKind};

/// Most entries one page returns (`limit`), and the CSV export at most.
pub const MAX_PAGE: u32 = 500;
pub const MAX_CSV_ROWS: u32 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Who did it: a user's id and name, or (a failed sign-in) just the name typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub name: String,
}

impl Actor {
    pub fn user(id: Uuid, name: &str) -> Self {
        Self {
            id: Some(id),
            name: name.to_owned(),
        }
    }
    /// Someone not (yet) known as a user: the name they gave.
    pub fn named(name: &str) -> Self {
        Self {
            id: None,
            name: name.chars().take(64).collect(),
        }
    }
}

/// The actor of a service that knows only the username (its id is looked
/// up; a name no account has is kept as given).
pub async fn actor_named(pool: &Pool, username: &str) -> Actor {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
    match id.and_then(|i| Uuid::parse_str(&i).ok()) {
        Some(id) => Actor::user(id, username),
        None => Actor::named(username),
    }
}

/// What it was done to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub kind: TargetKind,
    pub id: Option<String>,
    /// A human name for it at the time (username, VM name, template name…).
    pub label: String,
}

impl Target {
    pub fn new(kind: TargetKind, id: impl ToString, label: &str) -> Self {
        Self {
            kind,
            id: Some(id.to_string()),
            label: label.to_owned(),
        }
    }
    /// A setting of the service, named by what it is (`sla`, `calendar`…).
    pub fn settings(name: &str) -> Self {
        Self {
            kind: TargetKind::Settings,
            id: Some(name.to_owned()),
            label: name.to_owned(),
        }
    }
}

/// One entry to record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    pub target: Target,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

impl Entry {
    /// A successful `action` by `actor` on `target`, without detail.
    pub fn new(actor: Actor, action: Action, target: Target) -> Self {
        Self {
            actor,
            action,
            target,
            outcome: Outcome::Ok,
            detail: serde_json::json!({}),
        }
    }
    pub fn outcome(mut self, ok: bool) -> Self {
        self.outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
    /// The outcome of an operation that was tried, with `detail` and, for a
    /// failure, its reason (`detail.error`).
    pub fn result<T, E: std::fmt::Display>(
        self,
        result: &Result<T, E>,
        mut detail: serde_json::Value,
    ) -> Self {
        if let Err(e) = result {
            detail["error"] = serde_json::Value::String(e.to_string());
        }
        self.outcome(result.is_ok()).detail(detail)
    }
}

/// Writes `entry` now, from the current request's address; a failure is
/// logged (see the module's invariants).
pub async fn record(pool: &Pool, entry: Entry) {
    let action = entry.action;
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(action = action.as_str(), error = %e, "audit entry not written");
            return;
        }
    };
    if let Err(e) = record_in(&mut conn, entry).await {
        tracing::error!(action = action.as_str(), error = %e, "audit entry not written");
    }
}

/// Writes `entry` on `conn` (e.g. inside the transaction of the change it
/// describes, so one never commits without the other).
pub async fn record_in(conn: &mut crate::db::Conn, entry: Entry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, user_id, user_name, action, target_kind, target_id,
         target_label, ip, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(db::now())
    .bind(entry.actor.id.map(|u| u.to_string()))
    .bind(&entry.actor.name)
    .bind(entry.action.as_str())
    .bind(entry.target.kind.as_str())
    .bind(&entry.target.id)
    .bind(&entry.target.label)
    .bind(context::client_ip().map(|ip| ip.to_string()))
    .bind(entry.outcome.as_str())
    .bind(entry.detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// A session opened for a user by a sign-in `provider` (`local` for the
/// password form; the campus providers call this too, at the same point).
pub async fn signed_in(pool: &Pool, user_id: Uuid, username: &str, provider: &str) {
    let entry = Entry::new(
        Actor::user(user_id, username),
        Action::SignIn,
        Target::new(TargetKind::User, user_id, username),
    )
    .detail(serde_json::json!({ "provider": provider }));
    record(pool, entry).await;
}

/// A refused sign-in as `name` through `provider`; `account` is the user of
/// that name if there is one (the target; the actor stays unproven, so it
/// has no id). `reason` is a short code (`wrong_password`, `unknown_user`,
/// `disabled`…), never the password given.
pub async fn sign_in_failed(
    pool: &Pool,
    name: &str,
    account: Option<Uuid>,
    provider: &str,
    reason: &str,
) {
    let actor = Actor::named(name);
    let target = Target {
        kind: TargetKind::User,
        id: account.map(|u| u.to_string()),
        label: actor.name.clone(),
    };
    let entry = Entry::new(actor, Action::SignIn, target)
        .outcome(false)
        .detail(serde_json::json!({ "provider": provider, "reason": reason }));
    record(pool, entry).await;
}

/// A setting of the service changed by a user: `name` names it (`sla`,
/// `calendar`…), `value` is the new value (settings hold no secrets; a
/// caller whose setting could must leave them out).
pub async fn settings_changed(
    pool: &Pool,
    by: Actor,
    action: Action,
    name: &str,
    value: serde_json::Value,
) {
    let entry = Entry::new(by, action, Target::settings(name))
        .detail(serde_json::json!({ "value": value }));
    record(pool, entry).await;
}

/// An entry as read back (`GET /api/audit`).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Its place in the log (newest highest).
    pub seq: i64,
    pub at: String,
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub action: Action,
    pub target: Target,
    pub ip: Option<String>,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

/// Which entries to read (all optional; newest first).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<Uuid>,
    /// Exact username (of the actor).
    pub user: Option<String>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339 bounds: `from` inclusive, `to` exclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// The filter checked and normalised into bind values.
struct Checked {
    action: Option<Action>,
    target_kind: Option<TargetKind>,
    from: Option<String>,
    to: Option<String>,
}

fn check(f: &Filter) -> Result<Checked, AuditError> {
    let action = match f.action.as_deref().filter(|s| !s.is_empty()) {
        Some(a) => Some(
            Action::parse(a)
                .ok_or_else(|| AuditError::BadQuery(format!("unknown action {a:?}")))?,
        ),
        None => None,
    };
    let target_kind = match f.target_kind.as_deref().filter(|s| !s.is_empty()) {
        Some(k) => Some(
            TargetKind::parse(k)
                .ok_or_else(|| AuditError::BadQuery(format!("unknown target_kind {k:?}")))?,
        ),
        None => None,
    };
    let time = |name: &str, v: &Option<String>| -> Result<Option<String>, AuditError> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| Some(db::format_time(t.to_offset(time::UtcOffset::UTC))))
                .map_err(|_| AuditError::BadQuery(format!("{name} must be an RFC 3339 time"))),
            None => Ok(None),
        }
    };
    if f.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(AuditError::BadQuery(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(Checked {
        action,
        target_kind,
        from: time("from", &f.from)?,
        to: time("to", &f.to)?,
    })
}

/// The audit log's reader and its retention.
#[derive(Debug, Clone)]
pub struct Audit {
    pool: Pool,
    retention_days: u32,
}

impl Audit {
    pub fn new(pool: Pool, retention_days: u32) -> Self {
        Self {
            pool,
            retention_days,
        }
    }

    /// Records an entry (what a service does with [`record`]).
    pub async fn record(&self, entry: Entry) {
        record(&self.pool, entry).await;
    }

    /// A page of entries matching `filter`, newest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Record>, AuditError> {
        let limit = filter.limit.unwrap_or(100);
        self.query(filter, limit).await
    }

    /// Every entry matching `filter` (up to [`MAX_CSV_ROWS`]) as CSV, newest
    /// first. Cells a spreadsheet would take for a formula get a `'`.
    pub async fn csv(&self, filter: &Filter) -> Result<Vec<u8>, AuditError> {
        let mut f = filter.clone();
        let limit = f.limit.take().unwrap_or(MAX_CSV_ROWS);
        let rows = self.query(&f, limit).await?;
        Ok(csv_bytes(&rows))
    }

    async fn query(&self, filter: &Filter, limit: u32) -> Result<Vec<Record>, AuditError> {
        let c = check(filter)?;
        let rows = sqlx::query(
            "SELECT seq, at, user_id, user_name, action, target_kind, target_id, target_label,
                    ip, outcome, detail
             FROM audit_log
             WHERE ($1 IS NULL OR user_id = $1)
               AND ($2 IS NULL OR user_name = $2)
               AND ($3 IS NULL OR action = $3)
               AND ($4 IS NULL OR target_kind = $4)
               AND ($5 IS NULL OR target_id = $5)
               AND ($6 IS NULL OR at >= $6)
               AND ($7 IS NULL OR at < $7)
             ORDER BY seq DESC LIMIT $8 OFFSET $9",
        )
        .bind(filter.user_id.map(|u| u.to_string()))
        .bind(filter.user.as_deref().filter(|s| !s.is_empty()))
        .bind(c.action.map(Action::as_str))
        .bind(c.target_kind.map(TargetKind::as_str))
        .bind(filter.target_id.as_deref().filter(|s| !s.is_empty()))
        .bind(c.from)
        .bind(c.to)
        .bind(i64::from(limit))
        .bind(i64::from(filter.offset.unwrap_or(0)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes the entries past retention at `now` (the daily prune; tests
    /// pass their own `now`). Returns how many went.
    pub async fn prune(&self, now: OffsetDateTime) -> Result<u64, AuditError> {
        let Some(horizon) = retention::horizon(now, self.retention_days) else {
            return Ok(0);
        };
        let horizon = db::format_time(horizon);
        let mut tx = db::begin(&self.pool).await?;
        // The horizon only moves forward (a trigger refuses going back): a
        // `now` behind an earlier prune's changes nothing.
        sqlx::query("UPDATE audit_horizon SET horizon = $1 WHERE id = 1 AND horizon < $1")
            .bind(&horizon)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(&horizon)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }
}

fn from_row(row: &crate::db::Row) -> Result<Record, AuditError> {
    let bad = |what: &str, v: &str| {
        sqlx::Error::Decode(format!("audit_log holds an unknown {what} {v:?}").into())
    };
    let action: String = row.try_get("action")?;
    let kind: String = row.try_get("target_kind")?;
    let outcome: String = row.try_get("outcome")?;
    let detail: String = row.try_get("detail")?;
    Ok(Record {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        user_id: db::opt_uuid(row, "user_id")?,
        user_name: row.try_get("user_name")?,
        action: Action::parse(&action).ok_or_else(|| bad("action", &action))?,
        target: Target {
            kind: TargetKind::parse(&kind).ok_or_else(|| bad("target kind", &kind))?,
            id: row.try_get("target_id")?,
            label: row.try_get("target_label")?,
        },
        ip: row.try_get("ip")?,
        outcome: if outcome == "ok" {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

/// The CSV of `rows`: one header, one line per entry.
fn csv_bytes(rows: &[Record]) -> Vec<u8> {
    let safe = |s: &str| -> String {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_owned()
        }
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record([
        "at",
        "user_id",
        "user_name",
        "action",
        "target_kind",
        "target_id",
        "target_label",
        "ip",
        "outcome",
        "detail",
    ]);
    for r in rows {
        let _ = w.write_record([
            r.at.clone(),
            r.user_id.map(|u| u.to_string()).unwrap_or_default(),
            safe(&r.user_name),
            r.action.as_str().to_owned(),
            r.target.kind.as_str().to_owned(),
            safe(r.target.id.as_deref().unwrap_or("")),
            safe(&r.target.label),
            r.ip.clone().unwrap_or_default(),
            r.outcome.as_str().to_owned(),
            safe(&r.detail.to_string()),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let f = |f: Filter| check(&f).err().map(|e| e.to_string());
        assert!(
            f(Filter {
                action: Some("drop_table".into()),
                ..Filter::default()
            })
            .is_some_and(|m| m.contains("unknown action"))
        );
        assert!(
            f(Filter {
                from: Some("yesterday".into()),
                ..Filter::default()
            })
            .is_some_and(|m| m.contains("RFC 3339"))
        );
        assert!(
            f(Filter {
                limit: Some(MAX_PAGE + 1),
                ..Filter::default()
            })
            .is_some()
        );
        assert!(check(&Filter::default()).is_ok());
    }

    #[test]
    fn times_are_normalised_to_the_stored_form() {
        let c = check(&Filter {
            from: Some("2026-12-03T20:00:00+08:00".into()),
            ..Filter::default()
        });
        assert_eq!(
            c.ok().and_then(|c| c.from).as_deref(),
            Some("2026-12-03T12:00:00Z")
        );
    }

    #[test]
    fn csv_cells_are_not_formulas() {
        let r = Record {
            seq: 1,
            at: "2026-12-03T12:00:00Z".into(),
            user_id: None,
            user_name: "=cmd|' /C calc'!A0".into(),
            action: Action::SignIn,
            target: Target {
                kind: TargetKind::User,
                id: None,
                label: "@x".into(),
            },
            ip: Some("127.0.0.1".into()),
            outcome: Outcome::Failed,
            detail: serde_json::json!({"provider": "local"}),
        };
        let text = String::from_utf8(csv_bytes(&[r])).unwrap_or_default();
        assert!(text.contains("'=cmd"), "{text}");
        assert!(text.contains("'@x"), "{text}");
        assert!(text.contains("sign_in"), "{text}");
    }
}
