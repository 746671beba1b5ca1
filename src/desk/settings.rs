//! The desk's SLA settings: the policy (targets per priority, 7×24 flag)
//! and the service calendar, stored in `desk_settings` as JSON documents.
//!
//! Invariants: only a value that passed [`Policy::validate`] /
//! [`Calendar::from_spec`] is ever stored, so reading one back cannot fail
//! on its content (a row that does anyway — edited by hand — is logged and
//! the built-in default used, rather than stopping the desk). No row: the
//! default ([`Policy::default`], [`Calendar::default`]). Staff and admins
//! read the settings; only admins change them.

use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, CalendarSpec};
use super::sla::{Policy, Target};
use super::{Desk, DeskError, on_desk};
use crate::auth::Role;
use crate::db::{self, Pool};
use crate::users::User;

const POLICY_KEY: &str = "sla_policy";
const CALENDAR_KEY: &str = "calendar";

/// What an admin sends to change the policy: the four priorities' targets
/// (validated together, so the error can say which one is wrong).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyForm {
    pub p1: Target,
    pub p2: Target,
    pub p3: Target,
    pub p4: Target,
}

/// The settings the SLA engine runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlaSettings {
    pub policy: Policy,
    pub calendar: Calendar,
}

/// The stored policy and calendar (defaults where none is stored), in one query.
pub async fn load(pool: &Pool) -> Result<SlaSettings, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM desk_settings WHERE key IN ($1, $2)")
            .bind(POLICY_KEY)
            .bind(CALENDAR_KEY)
            .fetch_all(pool)
            .await?;
    let mut s = SlaSettings::default();
    for (key, value) in rows {
        let bad = |e: serde_json::Error| {
            tracing::warn!(key = %key, error = %e, "stored desk setting unreadable; using the default");
        };
        match key.as_str() {
            POLICY_KEY => match serde_json::from_str::<Policy>(&value) {
                Ok(p) => s.policy = p,
                Err(e) => bad(e),
            },
            CALENDAR_KEY => match serde_json::from_str::<Calendar>(&value) {
                Ok(c) => s.calendar = c,
                Err(e) => bad(e),
            },
            _ => {}
        }
    }
    Ok(s)
}

async fn store(pool: &Pool, key: &str, value: String, by: &User) -> Result<(), sqlx::Error> {
    // Both settings are written here, so here they are audited.
    sqlx::query(
        "INSERT INTO desk_settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
         updated_by = excluded.updated_by",
    )
    .bind(key)
    .bind(value.as_str())
    .bind(db::now())
    .bind(by.id.to_string())
    .execute(pool)
    .await?;
    let action = if key == CALENDAR_KEY {
        crate::audit::Action::SettingsCalendar
    } else {
        crate::audit::Action::SettingsSla
    };
    let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
    let actor = crate::audit::Actor::user(by.id, &by.username);
    crate::audit::settings_changed(pool, actor, action, key, value).await;
    Ok(())
}

fn require_desk(actor: &User) -> Result<(), DeskError> {
    if on_desk(actor) {
        Ok(())
    } else {
        Err(DeskError::Forbidden(
            "the SLA settings are for staff and admins".into(),
        ))
    }
}

fn require_admin(actor: &User) -> Result<(), DeskError> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(DeskError::Forbidden(
            "only admins change the SLA settings".into(),
        ))
    }
}

impl Desk {
    /// The SLA policy in force.
    pub async fn sla_policy(&self, actor: &User) -> Result<Policy, DeskError> {
        require_desk(actor)?;
        Ok(load(&self.pool).await?.policy)
    }

    /// Replaces the SLA policy (admins); it applies to every ticket from now
    /// on, including the time they have already run.
    pub async fn set_sla_policy(
        &self,
        actor: &User,
        form: PolicyForm,
    ) -> Result<Policy, DeskError> {
        require_admin(actor)?;
        let policy = Policy {
            p1: form.p1,
            p2: form.p2,
            p3: form.p3,
            p4: form.p4,
        };
        policy.validate()?;
        let json = serde_json::to_string(&policy)
            .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))?;
        store(&self.pool, POLICY_KEY, json, actor).await?;
        tracing::info!(by = %actor.username, "SLA policy changed");
        Ok(policy)
    }

    /// The service calendar in force, in its settings form.
    pub async fn calendar(&self, actor: &User) -> Result<CalendarSpec, DeskError> {
        require_desk(actor)?;
        Ok(load(&self.pool).await?.calendar.to_spec())
    }

    /// Replaces the service calendar (admins); returns it normalised
    /// (sorted hours and dates).
    pub async fn set_calendar(
        &self,
        actor: &User,
        spec: CalendarSpec,
    ) -> Result<CalendarSpec, DeskError> {
        require_admin(actor)?;
        let cal = Calendar::from_spec(&spec)?;
        let spec = cal.to_spec();
        let json = serde_json::to_string(&spec)
            .map_err(|e| DeskError::Io(std::io::Error::other(e.to_string())))?;
        store(&self.pool, CALENDAR_KEY, json, actor).await?;
        tracing::info!(by = %actor.username, "service calendar changed");
        Ok(spec)
    }
}
