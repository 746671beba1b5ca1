//! The daily inspection (日常巡检): a checklist run on a schedule (see
//! [`schedule`]) or on demand, recorded with its items, each failed item
//! opening (or joining) a desk system ticket.
//!
//! The checks: every node reachable, with its libvirt and QEMU versions;
//! template files against their SHA-256 in the library and the node stores'
//! copies (a seventh each day, all on the weekly full run or when asked);
//! SQLite `PRAGMA quick_check`; rows without files and files without rows
//! (templates, personal layers, desk screenshots); free space of the data
//! dir and of each node's store; each node's clock skew against this
//! server ([`clock`]: read from the file time of a probe volume the node
//! creates in its store pool; a warning over 2 s, a failure over 30 s); the
//! age of the last good backup and the last run's failures
//! ([`crate::backup`]; "not checked" while none has run).
//!
//! Invariants: an inspection is recorded whole, after all its checks (one
//! at a time: a second request waits for the first); a check that cannot
//! be made says so (`not_checked`) instead of passing; a `warning` is not a
//! failure (no ticket); a failed item's
//! ticket is keyed `inspection:<check>:<subject>`, so a failure found again
//! the next day joins the open ticket.

pub mod clock;
pub mod schedule;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::alerts::samples::text_time;
use crate::db::{self, Pool};
use crate::desk::{Desk, DeskError, SystemIncident};
use crate::events::{self, EventKind, NewEvent};
use crate::nodes::Nodes;
use crate::storage::Storage;
use crate::stores::Stores;

/// How often the loop asks whether an inspection is due.
pub const POLL: Duration = Duration::from_secs(60);
/// Longest wait for one node's answer.
const NODE_DEADLINE: Duration = Duration::from_secs(10);
/// The oldest a good backup may be at an inspection (nightly runs, with a
/// day's slack for one missed night).
pub const BACKUP_MAX_AGE_SECS: i64 = 36 * 3600;
/// Most inspections one list returns.
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum InspectionError {
    #[error("no such inspection")]
    NotFound,
    #[error("limit must be 1 to {MAX_LIMIT}")]
    BadLimit,
    #[error("stored inspection data is unreadable: {0}")]
    Stored(#[from] serde_json::Error),
    #[error(transparent)]
    Node(#[from] crate::nodes::NodeError),
    #[error(transparent)]
    Desk(#[from] DeskError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Ok,
    /// Worth a look, not a failure: no ticket (a clock skew over 2 s).
    Warning,
    Failed,
    NotChecked,
}

/// What an item checks (the UI names it in both languages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    NodeReachable,
    TemplateChecksum,
    StoreCopy,
    Database,
    TemplateFiles,
    LayerFiles,
    ScreenshotFiles,
    FreeSpace,
    ClockSkew,
    Backup,
}

impl Check {
    fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One line of the checklist (`checks[]` of API.md: `{name, ok, detail}`,
/// with what was checked, the three-way status and the ticket).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub name: Check,
    /// False only for a failed item (`not_checked` is not a failure).
    pub ok: bool,
    /// What was checked: a node's name, a template's name, `data dir`, `site`.
    pub subject: String,
    pub status: ItemStatus,
    /// Details in English (versions, what is missing).
    pub detail: String,
    /// The desk ticket a failure opened or joined.
    #[serde(default)]
    pub ticket_id: Option<Uuid>,
    /// The measured skew of a `clock_skew` item (the UI words it in the
    /// reader's language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<clock::Skew>,
}

impl Item {
    fn new(check: Check, subject: &str, status: ItemStatus, detail: impl Into<String>) -> Self {
        Item {
            name: check,
            ok: status != ItemStatus::Failed,
            subject: subject.to_owned(),
            status,
            detail: detail.into(),
            ticket_id: None,
            clock: None,
        }
    }
    fn ok(check: Check, subject: &str, detail: impl Into<String>) -> Self {
        Self::new(check, subject, ItemStatus::Ok, detail)
    }
    fn failed(check: Check, subject: &str, detail: impl Into<String>) -> Self {
        Self::new(check, subject, ItemStatus::Failed, detail)
    }
    fn not_checked(check: Check, subject: &str, detail: impl Into<String>) -> Self {
        Self::new(check, subject, ItemStatus::NotChecked, detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduled,
    Manual,
}

/// One recorded inspection.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub id: Uuid,
    /// When it started (RFC 3339).
    pub at: String,
    pub finished_at: String,
    pub trigger: Trigger,
    /// Username of who asked for a manual run.
    pub requested_by: Option<String>,
    /// Whether every template copy was checked (else the day's sample).
    pub full: bool,
    pub failed: u32,
    pub checks: Vec<Item>,
}

/// A line of the history (no items).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Uuid,
    pub at: String,
    pub finished_at: String,
    pub trigger: Trigger,
    pub requested_by: Option<String>,
    pub full: bool,
    pub failed: u32,
    /// How many items the checklist has.
    pub check_count: u32,
}

#[derive(Debug)]
pub struct Inspections {
    pool: Pool,
    nodes: Arc<Nodes>,
    desk: Arc<Desk>,
    storage: Storage,
    /// The node stores: their pool name, and the pool a clock probe uses.
    stores: Arc<Stores>,
    min_free_bytes: u64,
    /// One inspection at a time.
    running: tokio::sync::Mutex<()>,
}

impl Inspections {
    pub fn new(
        pool: Pool,
        nodes: Arc<Nodes>,
        desk: Arc<Desk>,
        storage: Storage,
        stores: Arc<Stores>,
        min_free_mib: u64,
    ) -> Self {
        Self {
            pool,
            nodes,
            desk,
            storage,
            stores,
            min_free_bytes: min_free_mib.saturating_mul(1024 * 1024),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// When the last inspection started.
    pub async fn last_started(&self) -> Result<Option<i64>, InspectionError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(started_at) FROM inspections")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The scheduled loop's pass: runs one if due at `now` (see
    /// [`schedule::is_due`]; `since` is when the loop started).
    pub async fn run_if_due(
        &self,
        now: i64,
        since: i64,
        minute_of_day: u32,
    ) -> Result<Option<Inspection>, InspectionError> {
        let last = self.last_started().await?;
        if !schedule::is_due(now, last, since, minute_of_day) {
            return Ok(None);
        }
        let full = schedule::is_full_day(schedule::day(now));
        Ok(Some(self.run(now, Trigger::Scheduled, None, full).await?))
    }

    /// Runs the checklist at `now` and records it.
    pub async fn run(
        &self,
        now: i64,
        trigger: Trigger,
        by: Option<&str>,
        full: bool,
    ) -> Result<Inspection, InspectionError> {
        let _one = self.running.lock().await;
        let clock = std::time::Instant::now();
        let day = schedule::day(now);
        let mut items = Vec::new();
        self.check_nodes(&mut items).await?;
        self.check_templates(&mut items, full, day).await?;
        self.check_store_copies(&mut items, full, day).await?;
        items.push(self.check_database().await);
        self.check_layer_files(&mut items).await?;
        self.check_screenshot_files(&mut items).await?;
        self.check_space(&mut items).await?;
        self.check_clocks(&mut items).await?;
        items.push(self.check_backup(now).await?);
        for item in items.iter_mut().filter(|i| i.status == ItemStatus::Failed) {
            let check = item.name.as_str();
            let key = format!("inspection:{check}:{}", item.subject);
            let title = format!("Inspection: {check} failed for {}", item.subject);
            let description = format!("The inspection found: {}", item.detail);
            item.ticket_id = self
                .desk
                .open_system_incident(&SystemIncident {
                    key: &key,
                    title: &title,
                    description: &description,
                    node_id: None,
                    context: json!({"inspection": {"check": check, "subject": item.subject}}),
                })
                .await?;
        }
        let failed = u32::try_from(
            items
                .iter()
                .filter(|i| i.status == ItemStatus::Failed)
                .count(),
        )
        .unwrap_or(u32::MAX);
        // The run's own duration, on the caller's time line.
        let finished = now + i64::try_from(clock.elapsed().as_secs()).unwrap_or(0);
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO inspections (id, started_at, finished_at, trigger, requested_by, full_check, failed, items)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(finished)
        .bind(match trigger {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
        })
        .bind(by)
        .bind(db::Flag(full))
        .bind(i64::from(failed))
        .bind(serde_json::to_string(&items)?)
        .execute(&self.pool)
        .await?;
        if failed > 0 {
            let names: Vec<String> = items
                .iter()
                .filter(|i| i.status == ItemStatus::Failed)
                .map(|i| format!("{} ({})", i.name.as_str(), i.subject))
                .collect();
            events::record(
                &self.pool,
                NewEvent::site(
                    EventKind::InspectionFailed,
                    format!("inspection {id}: {failed} failed: {}", names.join(", ")),
                )
                .by(by),
            )
            .await;
        }
        Ok(Inspection {
            id,
            at: text_time(now),
            finished_at: text_time(finished),
            trigger,
            requested_by: by.map(str::to_owned),
            full,
            failed,
            checks: items,
        })
    }

    /// The age of the last good backup ([`crate::backup::ages`]): failed
    /// when older than [`BACKUP_MAX_AGE_SECS`] or when the last run had
    /// failed items; not checked while no backup has ever run.
    async fn check_backup(&self, now: i64) -> Result<Item, InspectionError> {
        let ages = crate::backup::ages(&self.pool, now).await?;
        let Some(age) = ages.overall_secs else {
            return Ok(Item::not_checked(
                Check::Backup,
                "site",
                "no backup has run (no repository configured, or before the first run)",
            ));
        };
        let hours = age / 3600;
        let stale: Vec<&str> = ages
            .items
            .iter()
            .filter(|(_, a)| a.is_none_or(|a| a > BACKUP_MAX_AGE_SECS))
            .map(|(s, _)| s.as_str())
            .collect();
        Ok(if age > BACKUP_MAX_AGE_SECS || ages.last_failed > 0 {
            Item::failed(
                Check::Backup,
                "site",
                format!(
                    "last fully good backup {hours} h ago; {} item(s) failed in the last run; without a recent backup: {}",
                    ages.last_failed,
                    if stale.is_empty() {
                        "none".to_owned()
                    } else {
                        short(&stale.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    }
                ),
            )
        } else {
            Item::ok(
                Check::Backup,
                "site",
                format!("last fully good backup {hours} h ago"),
            )
        })
    }

    /// Each node's clock against this server's ([`clock`]), one probe each.
    async fn check_clocks(&self, items: &mut Vec<Item>) -> Result<(), InspectionError> {
        for n in self.nodes.list().await? {
            let probe = tokio::time::timeout(NODE_DEADLINE, self.stores.probe_clock(n.id))
                .await
                .map_err(|_| "no answer in time".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()));
            items.push(match probe {
                Ok(p) => {
                    let skew = clock::measure(&p);
                    let verdict = clock::verdict(skew);
                    let status = match verdict {
                        clock::Verdict::Ok => ItemStatus::Ok,
                        clock::Verdict::Warn => ItemStatus::Warning,
                        clock::Verdict::Fail => ItemStatus::Failed,
                        clock::Verdict::Inconclusive => ItemStatus::NotChecked,
                    };
                    let mut item = Item::new(
                        Check::ClockSkew,
                        &n.name,
                        status,
                        clock::describe(skew, verdict),
                    );
                    item.clock = Some(skew);
                    item
                }
                Err(e) => {
                    Item::not_checked(Check::ClockSkew, &n.name, format!("not measured: {e}"))
                }
            });
        }
        Ok(())
    }

    async fn check_nodes(&self, items: &mut Vec<Item>) -> Result<(), InspectionError> {
        let nodes = self.nodes.list().await?;
        for n in nodes {
            let answer = tokio::time::timeout(NODE_DEADLINE, async {
                let conn = self.nodes.conn(n.id).await.map_err(|e| e.to_string())?;
                conn.versions().await.map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            items.push(match answer {
                Ok((libvirt, qemu)) => Item::ok(
                    Check::NodeReachable,
                    &n.name,
                    format!("libvirt {libvirt}, QEMU {qemu}"),
                ),
                Err(e) => Item::failed(Check::NodeReachable, &n.name, format!("unreachable: {e}")),
            });
        }
        Ok(())
    }

    /// Library files against their recorded SHA-256, and rows against files.
    async fn check_templates(
        &self,
        items: &mut Vec<Item>,
        full: bool,
        day: i64,
    ) -> Result<(), InspectionError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, name, checksum FROM templates WHERE state = 'ready' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut missing = Vec::new();
        let mut known = HashSet::new();
        for (i, (id, name, checksum)) in rows.iter().enumerate() {
            let tid = db::parse_uuid(id)?;
            known.insert(format!("{tid}.qcow2"));
            let path = self.storage.template_path(tid);
            if !path.exists() {
                missing.push(name.clone());
                continue;
            }
            if !(full || schedule::in_daily_sample(i, day)) {
                continue;
            }
            let Some(expected) = checksum else {
                // Not used in a chain yet, so never summed: a ready layer is
                // immutable, so its sum now is the one to hold it to (the
                // chain code caches it the same way).
                match crate::storage::sha256_file(&path).await {
                    Ok(sum) => {
                        sqlx::query(
                            "UPDATE templates SET checksum = $1 WHERE id = $2 AND checksum IS NULL",
                        )
                        .bind(&sum)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                        items.push(Item::ok(Check::TemplateChecksum, name, "SHA-256 recorded"));
                    }
                    Err(e) => items.push(Item::failed(
                        Check::TemplateChecksum,
                        name,
                        format!("unreadable: {e}"),
                    )),
                }
                continue;
            };
            items.push(match crate::storage::sha256_file(&path).await {
                Ok(sum) if &sum == expected => {
                    Item::ok(Check::TemplateChecksum, name, "SHA-256 matches")
                }
                Ok(_) => Item::failed(
                    Check::TemplateChecksum,
                    name,
                    "the library file's SHA-256 differs from the recorded one",
                ),
                Err(e) => Item::failed(Check::TemplateChecksum, name, format!("unreadable: {e}")),
            });
        }
        let extra = files_in(&self.storage.templates_dir(), |f| {
            f.ends_with(".qcow2") && !known.contains(f)
        });
        items.push(files_item(
            Check::TemplateFiles,
            "templates",
            &missing,
            &extra,
        ));
        Ok(())
    }

    /// Node stores' copies (read back through libvirt) against the SHA-256
    /// they were verified with.
    async fn check_store_copies(
        &self,
        items: &mut Vec<Item>,
        full: bool,
        day: i64,
    ) -> Result<(), InspectionError> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT l.node_id, n.name, l.template_id, t.name, t.size_bytes FROM node_layers l
             JOIN nodes n ON n.id = l.node_id JOIN templates t ON t.id = l.template_id
             ORDER BY l.node_id, l.template_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let sums: Vec<(String, String, String)> =
            sqlx::query_as("SELECT node_id, template_id, sha256 FROM node_layers")
                .fetch_all(&self.pool)
                .await?;
        for (i, (node_id, node, tpl_id, tpl, size)) in rows.iter().enumerate() {
            if !(full || schedule::in_daily_sample(i, day)) {
                continue;
            }
            let Some((_, _, expected)) = sums.iter().find(|(n, t, _)| n == node_id && t == tpl_id)
            else {
                continue;
            };
            let subject = format!("{tpl} on {node}");
            let vol = format!("{tpl_id}.qcow2");
            let len = u64::try_from(*size).unwrap_or(0);
            let got = async {
                let conn = self
                    .nodes
                    .conn(db::parse_uuid(node_id).map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.volume_sha256(self.stores.pool_name(), &vol, len)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            items.push(match got {
                Ok(sum) if &sum == expected => {
                    Item::ok(Check::StoreCopy, &subject, "SHA-256 matches")
                }
                Ok(_) => Item::failed(
                    Check::StoreCopy,
                    &subject,
                    "the store's copy differs from the verified SHA-256",
                ),
                Err(e) => {
                    Item::not_checked(Check::StoreCopy, &subject, format!("not readable: {e}"))
                }
            });
        }
        Ok(())
    }

    async fn check_database(&self) -> Item {
        // SQLite's own page-level check; a PostgreSQL server checks its
        // pages itself (data checksums), so there it is whether it answers
        // and reports no checksum failure for this database.
        let sql = match db::backend(&self.pool) {
            db::Backend::Sqlite => "PRAGMA quick_check",
            db::Backend::Postgres => {
                "SELECT CASE WHEN COALESCE(checksum_failures, 0) = 0 THEN 'ok'
                 ELSE checksum_failures || ' checksum failures' END
                 FROM pg_stat_database WHERE datname = current_database()"
            }
        };
        let res: Result<Vec<String>, sqlx::Error> =
            sqlx::query_scalar(sql).fetch_all(&self.pool).await;
        match res {
            Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {
                Item::ok(Check::Database, "database", "quick_check: ok")
            }
            Ok(lines) => Item::failed(
                Check::Database,
                "database",
                format!("quick_check: {}", lines.join("; ")),
            ),
            Err(e) => Item::failed(
                Check::Database,
                "database",
                format!("quick_check failed: {e}"),
            ),
        }
    }

    /// Personal layers: a running VM's shared layer must exist; a layer file
    /// no VM names is left over.
    async fn check_layer_files(&self, items: &mut Vec<Item>) -> Result<(), InspectionError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, name, overlay_path, state FROM vms WHERE layer_storage = 'shared'",
        )
        .fetch_all(&self.pool)
        .await?;
        let all: Vec<String> = sqlx::query_scalar("SELECT overlay_path FROM vms")
            .fetch_all(&self.pool)
            .await?;
        let named: HashSet<&str> = all.iter().map(String::as_str).collect();
        let missing: Vec<String> = rows
            .iter()
            .filter(|(_, _, path, state)| state == "running" && !Path::new(path).exists())
            .map(|(id, name, ..)| format!("{name} ({id})"))
            .collect();
        let mut extra = Vec::new();
        walk(&self.storage.root().join("overlays"), &mut |p: &Path| {
            let s = p.to_string_lossy();
            if s.ends_with(".qcow2") && !named.contains(s.as_ref()) {
                extra.push(s.into_owned());
            }
        });
        items.push(files_item(
            Check::LayerFiles,
            "personal layers",
            &missing,
            &extra,
        ));
        Ok(())
    }

    async fn check_screenshot_files(&self, items: &mut Vec<Item>) -> Result<(), InspectionError> {
        let shas: Vec<String> = sqlx::query_scalar(
            "SELECT sha256 FROM desk_screenshots UNION SELECT screenshot FROM tickets WHERE screenshot IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let dir = self.storage.root().join("desk").join("screenshots");
        let known: HashSet<String> = shas.iter().map(|s| format!("{s}.png")).collect();
        let missing: Vec<String> = shas
            .iter()
            .filter(|s| !dir.join(format!("{s}.png")).exists())
            .cloned()
            .collect();
        let extra = files_in(&dir, |f| f.ends_with(".png") && !known.contains(f));
        items.push(files_item(
            Check::ScreenshotFiles,
            "desk screenshots",
            &missing,
            &extra,
        ));
        Ok(())
    }

    async fn check_space(&self, items: &mut Vec<Item>) -> Result<(), InspectionError> {
        let root = self.storage.root().to_path_buf();
        let free = tokio::task::spawn_blocking(move || crate::space::free_bytes(&root))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        items.push(match free {
            Ok(b) if b >= self.min_free_bytes => Item::ok(
                Check::FreeSpace,
                "data dir",
                format!("{} MiB free", b / (1024 * 1024)),
            ),
            Ok(b) => Item::failed(
                Check::FreeSpace,
                "data dir",
                format!(
                    "{} MiB free, under the {} MiB minimum",
                    b / (1024 * 1024),
                    self.min_free_bytes / (1024 * 1024)
                ),
            ),
            Err(e) => Item::failed(Check::FreeSpace, "data dir", format!("unreadable: {e}")),
        });
        let stores: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, store_free_bytes FROM nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        for (name, free) in stores {
            let subject = format!("store of {name}");
            items.push(match free.and_then(|f| u64::try_from(f).ok()) {
                None => Item::not_checked(Check::FreeSpace, &subject, "not sampled yet"),
                Some(b) if b >= self.min_free_bytes => Item::ok(
                    Check::FreeSpace,
                    &subject,
                    format!("{} MiB free", b / (1024 * 1024)),
                ),
                Some(b) => Item::failed(
                    Check::FreeSpace,
                    &subject,
                    format!("{} MiB free, under the minimum", b / (1024 * 1024)),
                ),
            });
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)] // one row's columns, named where destructured
    pub async fn list(&self, limit: u32) -> Result<Vec<Summary>, InspectionError> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(InspectionError::BadLimit);
        }
        let rows: Vec<(
            String,
            i64,
            i64,
            String,
            Option<String>,
            db::Flag,
            i64,
            String,
        )> = sqlx::query_as(
            "SELECT id, started_at, finished_at, trigger, requested_by, full_check, failed, items
                 FROM inspections ORDER BY started_at DESC, rowid DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(id, started_at, finished_at, trigger, requested_by, full, failed, items)| {
                    let items: Vec<Item> = serde_json::from_str(&items)?;
                    Ok(Summary {
                        id: db::parse_uuid(&id)?,
                        at: text_time(started_at),
                        finished_at: text_time(finished_at),
                        trigger: parse_trigger(&trigger),
                        requested_by,
                        full: full.0,
                        failed: u32::try_from(failed).unwrap_or(0),
                        check_count: u32::try_from(items.len()).unwrap_or(u32::MAX),
                    })
                },
            )
            .collect()
    }

    #[allow(clippy::type_complexity)] // one row's columns, named where destructured
    pub async fn get(&self, id: Uuid) -> Result<Inspection, InspectionError> {
        let row: Option<(i64, i64, String, Option<String>, db::Flag, i64, String)> =
            sqlx::query_as(
                "SELECT started_at, finished_at, trigger, requested_by, full_check, failed, items
             FROM inspections WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let (started_at, finished_at, trigger, requested_by, full, failed, items) =
            row.ok_or(InspectionError::NotFound)?;
        Ok(Inspection {
            id,
            at: text_time(started_at),
            finished_at: text_time(finished_at),
            trigger: parse_trigger(&trigger),
            requested_by,
            full: full.0,
            failed: u32::try_from(failed).unwrap_or(0),
            checks: serde_json::from_str(&items)?,
        })
    }
}

fn parse_trigger(s: &str) -> Trigger {
    if s == "manual" {
        Trigger::Manual
    } else {
        Trigger::Scheduled
    }
}

/// The "rows without files / files without rows" item of one kind.
fn files_item(check: Check, subject: &str, missing: &[String], extra: &[String]) -> Item {
    if missing.is_empty() && extra.is_empty() {
        return Item::ok(
            check,
            subject,
            "every row has its file and every file its row",
        );
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} without a file: {}",
            missing.len(),
            short(missing)
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "{} files without a row: {}",
            extra.len(),
            short(extra)
        ));
    }
    Item::failed(check, subject, parts.join("; "))
}

/// At most five names, then how many more.
fn short(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}

/// File names directly in `dir` that `keep` selects (none if `dir` is absent).
fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| keep(n))
        .collect();
    out.sort();
    out
}

/// Every file under `dir`, depth first.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, f),
            Ok(t) if t.is_file() => f(&p),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_item_names_both_directions() {
        let ok = files_item(Check::TemplateFiles, "templates", &[], &[]);
        assert_eq!(ok.status, ItemStatus::Ok);
        let names: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
        let bad = files_item(Check::TemplateFiles, "templates", &names[..1], &names);
        assert_eq!(bad.status, ItemStatus::Failed);
        assert_eq!(
            bad.detail,
            "1 without a file: f0; 7 files without a row: f0, f1, f2, f3, f4 and 2 more"
        );
        assert_eq!(Check::StoreCopy.as_str(), "store_copy");
    }
}
