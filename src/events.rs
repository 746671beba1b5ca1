//! The cluster's event log: what happened to nodes and where VMs went.
//!
//! Node state changes (down, up again), fencing, maintenance and drains,
//! node registration and removal, live migrations and layer moves are
//! recorded with the node's name at the time, the VM, and the admin who
//! asked (none for what the server noticed itself). Admins read it to
//! reconstruct an incident and to see which nodes fail often
//! (`GET /api/events`, the admin overview).
//!
//! Invariants: recording never fails the operation it describes (a database
//! error is logged and the event dropped); an event is written after the
//! fact it reports, so the log never claims what did not happen; rows older
//! than [`RETENTION_DAYS`] are pruned as new ones arrive.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{self, Pool};

/// How long events are kept.
pub const RETENTION_DAYS: i64 = 90;
/// Most events one query returns.
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    NodeAdded,
    NodeRemoved,
    /// The node stopped answering (its VMs show `node_down`).
    NodeDown,
    /// The node answers again.
    NodeUp,
    NodeFenced,
    MaintenanceOn,
    MaintenanceOff,
    DrainStarted,
    VmMigrated,
    VmMigrationFailed,
    VmMoved,
    /// A VM's domain could not be created on its node (the service desk
    /// counts these: repeated ones open a system incident).
    VmStartFailed,
    /// An alert fired (src/alerts/service.rs); the message names rule,
    /// subject and level.
    AlertFired,
    AlertEscalated,
    AlertDeescalated,
    AlertAcknowledged,
    /// An alert keeps firing and clearing: it stays open until calm.
    AlertFlapping,
    AlertResolved,
    /// A daily inspection found failed items (src/inspection/).
    InspectionFailed,
    /// Someone other than its owner (a teacher on the wall) opened a VM's
    /// console view-only; `actor` is who.
    ConsoleWatched,
    /// Someone other than its owner opened a VM's console with control.
    ConsoleTakenOver,
}

impl EventKind {
    pub const ALL: [Self; 21] = [
        Self::NodeAdded,
        Self::NodeRemoved,
        Self::NodeDown,
        Self::NodeUp,
        Self::NodeFenced,
        Self::MaintenanceOn,
        Self::MaintenanceOff,
        Self::DrainStarted,
        Self::VmMigrated,
        Self::VmMigrationFailed,
        Self::VmMoved,
        Self::VmStartFailed,
        Self::AlertFired,
        Self::AlertEscalated,
        Self::AlertDeescalated,
        Self::AlertAcknowledged,
        Self::AlertFlapping,
        Self::AlertResolved,
        Self::InspectionFailed,
        Self::ConsoleWatched,
        Self::ConsoleTakenOver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeAdded => "node_added",
            Self::NodeRemoved => "node_removed",
            Self::NodeDown => "node_down",
            Self::NodeUp => "node_up",
            Self::NodeFenced => "node_fenced",
            Self::MaintenanceOn => "maintenance_on",
            Self::MaintenanceOff => "maintenance_off",
            Self::DrainStarted => "drain_started",
            Self::VmMigrated => "vm_migrated",
            Self::VmMigrationFailed => "vm_migration_failed",
            Self::VmMoved => "vm_moved",
            Self::VmStartFailed => "vm_start_failed",
            Self::AlertFired => "alert_fired",
            Self::AlertEscalated => "alert_escalated",
            Self::AlertDeescalated => "alert_deescalated",
            Self::AlertAcknowledged => "alert_acknowledged",
            Self::AlertFlapping => "alert_flapping",
            Self::AlertResolved => "alert_resolved",
            Self::InspectionFailed => "inspection_failed",
            Self::ConsoleWatched => "console_watched",
            Self::ConsoleTakenOver => "console_taken_over",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("limit must be 1 to {MAX_LIMIT}")]
    BadLimit,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One recorded event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub kind: EventKind,
    pub node_id: Option<Uuid>,
    /// The node's name when the event happened (it may be gone since).
    pub node_name: Option<String>,
    pub vm_id: Option<Uuid>,
    /// Username of the admin who asked; `null` for what the server noticed.
    pub actor: Option<String>,
    /// Details in English (e.g. the migration's target, an error).
    pub message: String,
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub node: Option<(Uuid, &'a str)>,
    pub vm_id: Option<Uuid>,
    pub actor: Option<&'a str>,
    pub message: String,
}

impl<'a> NewEvent<'a> {
    pub fn node(kind: EventKind, id: Uuid, name: &'a str, message: impl Into<String>) -> Self {
        Self {
            kind,
            node: Some((id, name)),
            vm_id: None,
            actor: None,
            message: message.into(),
        }
    }

    /// An event about no node (the site, a store).
    pub fn site(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            node: None,
            vm_id: None,
            actor: None,
            message: message.into(),
        }
    }

    #[must_use]
    pub fn vm(mut self, vm_id: Uuid) -> Self {
        self.vm_id = Some(vm_id);
        self
    }

    #[must_use]
    pub fn by(mut self, actor: Option<&'a str>) -> Self {
        self.actor = actor;
        self
    }
}

/// Records an event; never fails the caller (see the module doc).
pub async fn record(pool: &Pool, e: NewEvent<'_>) {
    if let Err(err) = insert(pool, &e).await {
        tracing::warn!(kind = e.kind.as_str(), error = %err, "event not recorded");
    }
}

async fn insert(pool: &Pool, e: &NewEvent<'_>) -> Result<(), sqlx::Error> {
    let now = time::OffsetDateTime::now_utc();
    sqlx::query(
        "INSERT INTO events (at, kind, node_id, node_name, vm_id, actor, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(db::format_time(now))
    .bind(e.kind.as_str())
    .bind(e.node.map(|(id, _)| id.to_string()))
    .bind(e.node.map(|(_, name)| name))
    .bind(e.vm_id.map(|v| v.to_string()))
    .bind(e.actor)
    .bind(&e.message)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM events WHERE at < $1")
        .bind(db::format_time(now - time::Duration::days(RETENTION_DAYS)))
        .execute(pool)
        .await?;
    Ok(())
}

/// The newest events first, at most `limit` (1..=[`MAX_LIMIT`], else
/// [`EventError::BadLimit`]), of one node
/// or of all.
pub async fn list(pool: &Pool, node: Option<Uuid>, limit: u32) -> Result<Vec<Event>, EventError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(EventError::BadLimit);
    }
    let rows = sqlx::query(
        "SELECT id, at, kind, node_id, node_name, vm_id, actor, message FROM events
         WHERE ($1 IS NULL OR node_id = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(node.map(|n| n.to_string()))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(events_of(&rows)?)
}

/// The newest events about one VM or its node (what a fault report carries
/// as context), at most `limit`.
pub async fn recent_for(
    pool: &Pool,
    vm: Option<Uuid>,
    node: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Event>, EventError> {
    let rows = sqlx::query(
        "SELECT id, at, kind, node_id, node_name, vm_id, actor, message FROM events
         WHERE ($1 IS NOT NULL AND vm_id = $1) OR ($2 IS NOT NULL AND node_id = $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(vm.map(|v| v.to_string()))
    .bind(node.map(|n| n.to_string()))
    .bind(i64::from(limit.min(MAX_LIMIT)))
    .fetch_all(pool)
    .await?;
    Ok(events_of(&rows)?)
}

/// The events of `rows`; a kind this build does not know (written by a
/// newer one) is skipped.
fn events_of(rows: &[crate::db::Row]) -> Result<Vec<Event>, sqlx::Error> {
    rows.iter()
        .filter_map(|row| {
            let kind = EventKind::parse(row.try_get::<String, _>("kind").ok()?.as_str())?;
            Some(from_row(row, kind))
        })
        .collect()
}

fn from_row(row: &crate::db::Row, kind: EventKind) -> Result<Event, sqlx::Error> {
    Ok(Event {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind,
        node_id: db::opt_uuid(row, "node_id")?,
        node_name: row.try_get("node_name")?,
        vm_id: db::opt_uuid(row, "vm_id")?,
        actor: row.try_get("actor")?,
        message: row.try_get("message")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_their_api_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_value(k).unwrap_or_default();
            assert_eq!(json, k.as_str());
        }
        assert_eq!(EventKind::parse("node_exploded"), None);
    }
}
