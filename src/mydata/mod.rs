//! A person's own data (the right of access): one download of everything
//! pvce holds about the signed-in user — account, sign-in links, courses,
//! VMs and their layers, snapshots and backup points, tickets with the
//! comments the reporter may read, notifications, usage (VM starts, console
//! sessions, events), the audit entries by or about them, and the erase
//! records of their data.
//!
//! Invariants:
//! - Every query is bound to the caller's id (directly, or through the VMs
//!   and tickets that are theirs): nothing of another user ever appears.
//!   Another person's *id* may appear where it belongs to the caller's
//!   record (the teacher of a course, the assignee of a ticket) — never
//!   their rows.
//! - Secrets and internals stay out: no password hash, no session token
//!   hash, no file paths of layers or restic snapshot ids, no internal
//!   (staff-only) ticket notes — the same things the API never shows the
//!   user.
//! - The document is versioned (`format`) so a reader can tell what it holds.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Column, Row, TypeInfo, ValueRef};
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::users::User;

/// The version of the export document.
pub const FORMAT: &str = "pvce-personal-data/1";

#[derive(Debug, thiserror::Error)]
pub enum MyDataError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The export: sections by name, each a list of records (or one record).
#[derive(Debug, Serialize)]
pub struct Export {
    pub format: &'static str,
    pub generated_at: String,
    pub user_id: Uuid,
    pub username: String,
    pub sections: Map<String, Value>,
}

impl Export {
    /// The download's file name: ASCII only (the username may be anything).
    pub fn file_name(&self) -> String {
        let date = self.generated_at.get(..10).unwrap_or("export");
        format!("pvce-my-data-{}-{date}.json", self.user_id)
    }
}

/// One section: its name and a query whose only parameter is the user's id
/// (used as often as the query names `?1`).
#[derive(Clone, Copy)]
struct Section {
    name: &'static str,
    sql: &'static str,
    /// One record (the account) rather than a list.
    single: bool,
}

const fn list(name: &'static str, sql: &'static str) -> Section {
    Section {
        name,
        sql,
        single: false,
    }
}

/// What the export holds. The column lists are explicit so that a column
/// added later (maybe a secret) does not slip into the download unseen.
const SECTIONS: &[Section] = &[
    Section {
        name: "account",
        sql: "SELECT id, username, display_name, role, disabled, must_change_password, created_at
              FROM users WHERE id = $1",
        single: true,
    },
    list(
        "sign_in_links",
        "SELECT provider, subject, created_at, last_sign_in_at FROM external_accounts
         WHERE user_id = $1 ORDER BY provider",
    ),
    list(
        "sessions",
        "SELECT created_at, expires_at, provider FROM sessions WHERE user_id = $1 ORDER BY created_at",
    ),
    list(
        "notification_settings",
        "SELECT lang, email, webhook_url, webhook_format, prefs FROM notification_settings
         WHERE user_id = $1",
    ),
    list(
        "courses_enrolled",
        "SELECT c.id, c.code, c.name, c.teacher_id, e.created_at AS enrolled_at
         FROM enrolments e JOIN courses c ON c.id = e.course_id
         WHERE e.user_id = $1 ORDER BY c.code",
    ),
    list(
        "courses_taught",
        "SELECT id, code, name, created_at FROM courses WHERE teacher_id = $1 ORDER BY code",
    ),
    list(
        "layers",
        "SELECT v.id AS vm_id, v.name, v.course_id, c.code AS course_code, v.template_id, v.state,
                v.layer_storage, v.layer_bytes, v.last_started_at, v.created_at
         FROM vms v LEFT JOIN courses c ON c.id = v.course_id
         WHERE v.owner_id = $1 ORDER BY v.created_at",
    ),
    list(
        "snapshots",
        "SELECT s.id, s.vm_id, s.name, s.kind, s.size_bytes, s.created_at
         FROM snapshots s JOIN vms v ON v.id = s.vm_id
         WHERE v.owner_id = $1 ORDER BY s.created_at",
    ),
    list(
        "backups",
        "SELECT p.id, p.vm_id, p.at, p.bytes_added, p.bytes_total
         FROM backup_points p JOIN vms v ON v.id = p.vm_id
         WHERE p.kind = 'layer' AND v.owner_id = $1 ORDER BY p.at",
    ),
    list(
        "restores",
        "SELECT r.id, r.vm_id, r.point_id, r.point_at, r.by_user, r.at
         FROM backup_restores r JOIN vms v ON v.id = r.vm_id
         WHERE v.owner_id = $1 ORDER BY r.at",
    ),
    list(
        "tickets",
        "SELECT id, number, kind, title, description, state, priority, channel, assignee_id,
                vm_id, course_id, created_at, updated_at, responded_at, resolved_at, reply, replied_at
         FROM tickets WHERE reporter_id = $1 ORDER BY number",
    ),
    list(
        "ticket_comments",
        // What the reporter sees on the ticket's timeline: never internal notes.
        "SELECT e.ticket_id, e.at, e.actor_id, e.kind, e.text
         FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
         WHERE t.reporter_id = $1 AND e.internal = 0 ORDER BY e.id",
    ),
    list(
        "screenshots",
        "SELECT id, bytes, vm_id, taken_at, ticket_id FROM desk_screenshots
         WHERE taken_by = $1 ORDER BY taken_at",
    ),
    list(
        "notifications",
        "SELECT id, source, ticket_id, kind, event, created_at, read_at FROM notifications
         WHERE user_id = $1 ORDER BY id",
    ),
    list(
        "vm_starts",
        "SELECT vm_id, course_id, requested_ms, outcome, error_code, running_ms, first_frame_ms
         FROM slo_vm_starts WHERE user_id = $1 ORDER BY requested_ms",
    ),
    list(
        "console_sessions",
        "SELECT vm_id, issued_ms, opened_ms, established_ms, first_frame_ms, ended_ms, ended_by
         FROM slo_console_sessions WHERE user_id = $1 ORDER BY issued_ms",
    ),
    list(
        "vm_events",
        "SELECT ev.at, ev.kind, ev.vm_id, ev.message FROM events ev
         JOIN vms v ON v.id = ev.vm_id WHERE v.owner_id = $1 ORDER BY ev.id",
    ),
    list(
        "audit",
        // Entries of their own actions, and of others' actions on their account.
        "SELECT at, user_name, action, target_kind, target_id, target_label, ip, outcome, detail
         FROM audit_log WHERE user_id = $1 OR (target_kind = 'user' AND target_id = $1)
         ORDER BY seq",
    ),
];

/// The service behind `GET /api/me/export`.
#[derive(Debug)]
pub struct MyData {
    pool: Pool,
    /// Sections other modules add (the erase records of [`crate::term`]).
    extra: Vec<(&'static str, &'static str)>,
}

impl MyData {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            extra: Vec::new(),
        }
    }

    /// Adds a section: `sql` has the user's id as its only parameter (`?1`).
    pub fn with_section(mut self, name: &'static str, sql: &'static str) -> Self {
        self.extra.push((name, sql));
        self
    }

    /// Everything pvce holds about `user`, read in one transaction so the
    /// sections agree with each other.
    pub async fn export(&self, user: &User) -> Result<Export, MyDataError> {
        let id = user.id.to_string();
        let mut tx = crate::db::begin(&self.pool).await?;
        let mut sections = Map::new();
        let extra = self.extra.iter().map(|&(name, sql)| Section {
            name,
            sql,
            single: false,
        });
        for s in SECTIONS.iter().copied().chain(extra) {
            let rows = sqlx::query(s.sql).bind(&id).fetch_all(&mut *tx).await?;
            let mut records: Vec<Value> = rows.iter().map(record).collect();
            let value = if s.single {
                records.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(records)
            };
            sections.insert(s.name.to_owned(), value);
        }
        tx.commit().await?;
        Ok(Export {
            format: FORMAT,
            generated_at: crate::db::now(),
            user_id: user.id,
            username: user.username.clone(),
            sections,
        })
    }
}

/// A row as a JSON object, each column by the type of the value it holds
/// (SQLite is dynamically typed). Text holding JSON (settings, details)
/// stays text: the export shows what is stored.
fn record(row: &db::Row) -> Value {
    let mut obj = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let value = match row.try_get_raw(i) {
            Ok(raw) if raw.is_null() => Value::Null,
            Ok(raw) => {
                let kind = raw.type_info().name().to_ascii_uppercase();
                match kind.as_str() {
                    "INTEGER" | "BOOLEAN" | "INT8" => row
                        .try_get::<i64, _>(i)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    "REAL" => row
                        .try_get::<f64, _>(i)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    _ => row
                        .try_get::<String, _>(i)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                }
            }
            Err(_) => Value::Null,
        };
        obj.insert(col.name().to_owned(), value);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_is_ascii_whatever_the_username() {
        let e = Export {
            format: FORMAT,
            generated_at: "2026-12-03T22:00:00Z".into(),
            user_id: Uuid::nil(),
            username: "学生\"; rm".into(),
            sections: Map::new(),
        };
        let name = e.file_name();
        assert!(name.is_ascii());
        assert_eq!(
            name,
            "pvce-my-data-00000000-0000-0000-0000-000000000000-2026-12-03.json"
        );
    }

    #[test]
    fn no_section_reads_a_secret_column() {
        for s in SECTIONS {
            let sql = s.sql.to_ascii_lowercase();
            for secret in [
                "password_hash",
                "token_hash",
                "overlay_path",
                "snapshot,",
                "p.path",
            ] {
                assert!(!sql.contains(secret), "{} reads {secret}", s.name);
            }
            assert!(!sql.contains("select *"), "{} lists its columns", s.name);
        }
    }
}
