//! Two kinds of ticket with a duty of their own (issue 13):
//! - a **complaint** (投诉) needs an admin's written reply: it is kept on the
//!   ticket (`reply`, `replied_at`, `replied_by`), is a public timeline entry
//!   (`reply`) the reporter reads and is notified of, and the desk's figures
//!   count complaints replied to;
//! - a **service request** for software can be linked to the template it
//!   leads to; when that template is sealed (`builds::seal`, and the desk's
//!   periodic pass as a catch-up) the request gets a work-log line and is
//!   resolved — if someone has taken it; an untaken one keeps the line and
//!   waits for the desk.
//!
//! Invariants: a request's sealed template is acted on once
//! (`leads_to_handled_at`); state changes go through `tickets::next_state`.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::DeskError;
use super::tickets::{self, Action, NewEvent, State};
use crate::db::{self, Pool};

/// Writes an admin's reply to a complaint (the caller checked who and what).
pub async fn write_reply(
    pool: &Pool,
    actor: Uuid,
    ticket: Uuid,
    text: &str,
) -> Result<(), DeskError> {
    let now = db::now();
    let mut tx = db::begin(pool).await?;
    tickets::update(
        &mut tx,
        ticket,
        "reply = ?, replied_at = ?, replied_by = ?, updated_at = ?, responded_at = COALESCE(responded_at, ?)",
        &[
            Some(text.to_owned()),
            Some(now.clone()),
            Some(actor.to_string()),
            Some(now.clone()),
            Some(now.clone()),
        ],
    )
    .await?;
    tickets::add_event(
        &mut tx,
        ticket,
        &now,
        NewEvent::by(actor, "reply").text(text),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Links a request to the template it leads to (the caller checked who and
/// what), then acts at once if that template is already sealed.
pub async fn link_template(
    pool: &Pool,
    actor: Uuid,
    ticket: Uuid,
    template_id: Uuid,
) -> Result<(), DeskError> {
    let template = crate::templates::get(pool, template_id)
        .await
        .map_err(|_| DeskError::Unacceptable("template_id: no such template".into()))?;
    let now = db::now();
    let mut tx = db::begin(pool).await?;
    tickets::update(
        &mut tx,
        ticket,
        "leads_to_template_id = ?, leads_to_handled_at = NULL, updated_at = ?",
        &[Some(template_id.to_string()), Some(now.clone())],
    )
    .await?;
    tickets::add_event(
        &mut tx,
        ticket,
        &now,
        NewEvent::by(actor, "template_linked")
            .data(json!({"template_id": template_id, "template_name": template.name})),
    )
    .await?;
    tx.commit().await?;
    resolve_sealed(pool, OffsetDateTime::now_utc()).await?;
    Ok(())
}

/// Acts on every open request whose linked template is sealed (`ready`):
/// a work-log line by the server, then resolved if it has an assignee.
/// Returns how many requests were acted on.
pub async fn resolve_sealed(pool: &Pool, now: OffsetDateTime) -> Result<u64, DeskError> {
    let rows = sqlx::query(
        "SELECT t.id, t.state, t.assignee_id, tp.id AS template_id, tp.name FROM tickets t
         JOIN templates tp ON tp.id = t.leads_to_template_id
         WHERE t.leads_to_template_id IS NOT NULL AND t.leads_to_handled_at IS NULL
           AND t.kind = 'request' AND tp.state = 'ready'",
    )
    .fetch_all(pool)
    .await?;
    let at = db::format_time(now);
    let mut done = 0;
    for row in rows {
        let id = db::uuid(&row, "id")?;
        let state = State::parse(&row.try_get::<String, _>("state")?).unwrap_or(State::Closed);
        let assigned = row.try_get::<Option<String>, _>("assignee_id")?.is_some();
        let name: String = row.try_get("name")?;
        let template_id: String = row.try_get("template_id")?;
        let mut tx = db::begin(pool).await?;
        // Once only, even if two passes race.
        let claimed = sqlx::query(
            "UPDATE tickets SET leads_to_handled_at = $1 WHERE id = $2 AND leads_to_handled_at IS NULL",
        )
        .bind(&at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 || !state.is_open() {
            tx.commit().await?;
            continue;
        }
        let line = format!("template {name} is sealed and ready");
        tickets::add_event(
            &mut tx,
            id,
            &at,
            NewEvent::system("worklog")
                .text(&line)
                .data(json!({"template_sealed": template_id, "template_name": name})),
        )
        .await?;
        if let Ok(to) = tickets::next_state(state, Action::Resolve, assigned)
            && tickets::set_state(&mut tx, id, state, to, &at).await?
        {
            // Stored once for every reader: both languages.
            let resolution =
                format!("模板 {name} 已封装，可以使用了。 The template {name} is ready to use.");
            tickets::update(
                &mut tx,
                id,
                "resolution = ?, resolved_at = ?, responded_at = COALESCE(responded_at, ?)",
                &[Some(resolution.clone()), Some(at.clone()), Some(at.clone())],
            )
            .await?;
            tickets::add_event(
                &mut tx,
                id,
                &at,
                NewEvent::system("resolved").text(&resolution).data(json!({
                    "from": state.as_str(), "to": to.as_str(), "template_name": name,
                })),
            )
            .await?;
        }
        tx.commit().await?;
        done += 1;
    }
    Ok(done)
}
