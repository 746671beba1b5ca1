//! Directory sync: what the LDAP directories say now about the people who
//! signed in through them, applied to their pvce accounts without waiting
//! for their next sign-in (`pvce directory sync [--dry-run]`, the admin's
//! "sync now", `POST /api/directory/sync`).
//!
//! Invariants:
//! - Only accounts linked to an LDAP provider (`external_accounts`) are
//!   looked at; local accounts and other providers' are never touched.
//! - A person the directory no longer has (or whose username now names
//!   another entry: a different subject) or whom the rules `disable` is
//!   disabled, which ends their sessions; an account already disabled stays
//!   as it is (re-enabling is an admin's decision, as at sign-in).
//! - The rules ([`crate::auth::rules`]) give the role, as at sign-in; the
//!   course links ([`crate::courses::Courses::follow_directory`]) give the
//!   enrolments (leaving keeps VMs and layers).
//! - A directory that cannot be reached changes nothing for its accounts:
//!   "unreachable" is never read as "everyone left". The report says so.
//! - `dry_run` computes the same report and writes nothing.
//! - Every real sync — scheduled (`--directory-sync-at HH:MM`, UTC, daily),
//!   the admin's or the command's — is recorded with its report in
//!   `directory_syncs` (the last [`KEEP_RUNS`] are kept); the schedule reads
//!   its last run there, so a restart neither repeats nor skips a slot
//!   ([`crate::daily::is_due`], a pure function of the instants).

use std::sync::Arc;

use serde::Serialize;

use crate::auth::ldap::LdapOutcome;
use crate::auth::rules::{self, Outcome};
use crate::auth::sso::Sso;
use crate::courses::Courses;
use crate::daily::TimeOfDay;
use crate::db::Pool;
use crate::users::{self, User, UserError, UserPatch};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Course(#[from] crate::courses::CourseError),
}

/// Runs kept in `directory_syncs`.
pub const KEEP_RUNS: i64 = 200;

/// What started a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Scheduled,
    Admin,
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Admin => "admin",
            Trigger::Command => "command",
        }
    }
}

/// A recorded sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRun {
    /// Unix seconds.
    pub at: i64,
    pub trigger: String,
    pub report: serde_json::Value,
}

/// The schedule and the recent runs, for the admin's page.
#[derive(Debug, Clone, Serialize)]
pub struct SyncHistory {
    /// `HH:MM` (UTC) or `off`.
    pub schedule: String,
    /// Whether any LDAP provider is configured (else nothing ever runs).
    pub configured: bool,
    pub runs: Vec<SyncRun>,
}

/// One account's role change.
#[derive(Debug, Clone, Serialize)]
pub struct RoleChange {
    pub username: String,
    pub from: crate::auth::Role,
    pub to: crate::auth::Role,
}

/// One account's course change.
#[derive(Debug, Clone, Serialize)]
pub struct CourseChange {
    pub username: String,
    pub course: String,
}

/// What a sync of one provider changed (or would change).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderReport {
    pub provider: String,
    /// Accounts looked up.
    pub checked: u64,
    pub disabled: Vec<String>,
    pub role_changes: Vec<RoleChange>,
    pub enrolled: Vec<CourseChange>,
    pub left: Vec<CourseChange>,
    /// Set when the directory could not be reached: nothing was changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub providers: Vec<ProviderReport>,
}

impl SyncReport {
    /// The report as lines for the command line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let verb =
            |done: &'static str, would: &'static str| if self.dry_run { would } else { done };
        for p in &self.providers {
            match &p.unavailable {
                Some(why) => out.push(format!(
                    "{}: directory unavailable ({why}); nothing changed",
                    p.provider
                )),
                None => out.push(format!("{}: {} accounts checked", p.provider, p.checked)),
            }
            for u in &p.disabled {
                out.push(format!("  {} {u}", verb("disabled", "would disable")));
            }
            for c in &p.role_changes {
                out.push(format!(
                    "  {} {}: {} → {}",
                    verb("role of", "would change the role of"),
                    c.username,
                    c.from.as_str(),
                    c.to.as_str()
                ));
            }
            for c in &p.enrolled {
                out.push(format!(
                    "  {} {} in {}",
                    verb("enrolled", "would enrol"),
                    c.username,
                    c.course
                ));
            }
            for c in &p.left {
                out.push(format!(
                    "  {} {} from {} (VMs kept)",
                    verb("unenrolled", "would unenrol"),
                    c.username,
                    c.course
                ));
            }
        }
        if self.providers.is_empty() {
            out.push("no LDAP provider is configured".into());
        }
        out
    }
}

#[derive(Debug)]
pub struct DirectorySync {
    pool: Pool,
    sso: Arc<Sso>,
    courses: Arc<Courses>,
    schedule: TimeOfDay,
}

impl DirectorySync {
    pub fn new(pool: Pool, sso: Arc<Sso>, courses: Arc<Courses>, schedule: TimeOfDay) -> Self {
        Self {
            pool,
            sso,
            courses,
            schedule,
        }
    }

    /// A real sync at `now` (Unix seconds), recorded with what started it.
    pub async fn run(&self, trigger: Trigger, now: i64) -> Result<SyncReport, DirectoryError> {
        let report = self.sync(false).await?;
        let json = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
        let mut tx = crate::db::begin(&self.pool).await?;
        sqlx::query("INSERT INTO directory_syncs (at, trigger, report) VALUES ($1, $2, $3)")
            .bind(now)
            .bind(trigger.as_str())
            .bind(json)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM directory_syncs WHERE id <= (SELECT MAX(id) FROM directory_syncs) - $1",
        )
        .bind(KEEP_RUNS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// A sync someone asked for: a preview (`dry_run`, nothing written or
    /// recorded) or a real, recorded run.
    pub async fn requested(
        &self,
        dry_run: bool,
        trigger: Trigger,
        now: i64,
    ) -> Result<SyncReport, DirectoryError> {
        if dry_run {
            self.sync(true).await
        } else {
            self.run(trigger, now).await
        }
    }

    /// The scheduled sync: runs when a daily slot has passed since the last
    /// scheduled run (or since `since`, when the loop started watching).
    /// `None` when not due, off, or no LDAP provider is configured.
    pub async fn run_if_due(
        &self,
        now: i64,
        since: i64,
    ) -> Result<Option<SyncReport>, DirectoryError> {
        let Some(minute) = self.schedule.0 else {
            return Ok(None);
        };
        if self.sso.directories().next().is_none() {
            return Ok(None);
        }
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(at) FROM directory_syncs WHERE trigger = 'scheduled'")
                .fetch_one(&self.pool)
                .await?;
        if !crate::daily::is_due(now, last, since, minute) {
            return Ok(None);
        }
        let report = self.run(Trigger::Scheduled, now).await?;
        for line in report.lines() {
            tracing::info!(target: "pvce::directory", "scheduled sync: {line}");
        }
        Ok(Some(report))
    }

    /// The schedule and the last `limit` runs, newest first.
    pub async fn history(&self, limit: u32) -> Result<SyncHistory, DirectoryError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT at, trigger, report FROM directory_syncs ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit.clamp(1, 100)))
        .fetch_all(&self.pool)
        .await?;
        Ok(SyncHistory {
            schedule: self.schedule.to_string(),
            configured: self.sso.directories().next().is_some(),
            runs: rows
                .into_iter()
                .map(|(at, trigger, report)| SyncRun {
                    at,
                    trigger,
                    report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
                })
                .collect(),
        })
    }

    /// Syncs every LDAP provider's accounts (see the module's invariants).
    pub async fn sync(&self, dry_run: bool) -> Result<SyncReport, DirectoryError> {
        let mut report = SyncReport {
            dry_run,
            providers: Vec::new(),
        };
        for (provider, directory) in self.sso.directories() {
            let mut p = ProviderReport {
                provider: provider.to_owned(),
                ..ProviderReport::default()
            };
            let accounts: Vec<(String, String)> = sqlx::query_as(
                "SELECT subject, user_id FROM external_accounts WHERE provider = $1 ORDER BY user_id",
            )
            .bind(provider)
            .fetch_all(&self.pool)
            .await?;
            // Look everyone up before changing anyone: a directory that goes
            // away halfway changes nothing.
            let mut found = Vec::with_capacity(accounts.len());
            for (subject, user_id) in accounts {
                let Some(user) = users::get_by_id_str(&self.pool, &user_id).await? else {
                    continue;
                };
                if user.disabled {
                    continue;
                }
                match directory.lookup(&user.username).await {
                    Ok(person) => {
                        let person = person.filter(|x| x.subject == subject);
                        found.push((user, person));
                    }
                    Err(LdapOutcome::Unavailable(why)) => {
                        p.unavailable = Some(why);
                        break;
                    }
                    // Not a look-up's answer; read as "not there".
                    Err(LdapOutcome::BadCredentials) => found.push((user, None)),
                }
            }
            if p.unavailable.is_some() {
                report.providers.push(p);
                continue;
            }
            let by = User::directory(provider);
            for (user, person) in found {
                p.checked += 1;
                let decision = person
                    .as_ref()
                    .map(|x| rules::decide(self.sso.rules(), &x.attributes).outcome);
                match (person, decision) {
                    (None, _) | (_, Some(Outcome::Disable)) => {
                        if !dry_run {
                            // Disabling ends every session of the account.
                            users::update(
                                &self.pool,
                                &by,
                                user.id,
                                UserPatch {
                                    disabled: Some(true),
                                    ..UserPatch::default()
                                },
                            )
                            .await?;
                        }
                        p.disabled.push(user.username);
                    }
                    (Some(person), Some(outcome)) => {
                        let mut user = user;
                        if let Some(role) = outcome.role().filter(|r| *r != user.role) {
                            let changed = if dry_run {
                                Ok(User {
                                    role,
                                    ..user.clone()
                                })
                            } else {
                                users::update(
                                    &self.pool,
                                    &by,
                                    user.id,
                                    UserPatch {
                                        role: Some(role),
                                        ..UserPatch::default()
                                    },
                                )
                                .await
                            };
                            match changed {
                                Ok(u) => {
                                    p.role_changes.push(RoleChange {
                                        username: u.username.clone(),
                                        from: user.role,
                                        to: role,
                                    });
                                    user = u;
                                }
                                // A teacher who still owns courses keeps the
                                // role until they are handed over.
                                Err(UserError::OwnsCourses(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        // `refuse` opens nothing at sign-in; here it leaves the
                        // account and its courses as they are.
                        if outcome != Outcome::Refuse {
                            let links = self
                                .courses
                                .follow_directory(&user, &person.attributes, dry_run)
                                .await?;
                            p.enrolled.extend(links.enrolled.into_iter().map(|course| {
                                CourseChange {
                                    username: user.username.clone(),
                                    course,
                                }
                            }));
                            p.left
                                .extend(links.left.into_iter().map(|course| CourseChange {
                                    username: user.username.clone(),
                                    course,
                                }));
                        }
                    }
                    (Some(_), None) => {}
                }
            }
            if !dry_run {
                tracing::info!(
                    provider,
                    checked = p.checked,
                    disabled = p.disabled.len(),
                    role_changes = p.role_changes.len(),
                    enrolled = p.enrolled.len(),
                    left = p.left.len(),
                    "directory sync"
                );
            }
            report.providers.push(p);
        }
        Ok(report)
    }
}
