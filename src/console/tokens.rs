//! Console tokens: the single-use, short-lived tickets that open a console
//! WebSocket, kept in the database (`console_tokens`, migration 0043).
//!
//! Why the database and not the server's memory: with several pvce servers
//! behind a load balancer, `POST /api/vms/{id}/console` and the WebSocket
//! that follows can reach different servers. A row is what every server
//! sees.
//!
//! Invariants:
//! - only the token's SHA-256 is stored (a database dump opens no console),
//!   and the token itself is never logged;
//! - redeeming is one `DELETE … RETURNING` on the hash: whichever server
//!   runs it first gets the row, every later attempt finds nothing, so a
//!   token opens at most one session in the whole cluster — also when two
//!   servers race for it;
//! - a token of one kind (screen, serial) never opens the other: redeeming
//!   with the wrong kind uses the token up and refuses;
//! - expiry is the issuing server's wall clock plus the TTL, compared with
//!   the redeeming server's wall clock (servers keep their clocks in sync,
//!   as the leases already require); expired rows are purged when the next
//!   token is issued, so the table holds at most a TTL's worth of tokens.

use uuid::Uuid;

use crate::db::{self, Pool};

use super::ConsoleKind;

/// A token's row, as redeeming returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRow {
    pub kind: ConsoleKind,
    pub view_only: bool,
    pub vm_id: Uuid,
    pub user_id: Uuid,
    pub node_id: Uuid,
    pub boot: String,
    pub record: Uuid,
    pub expires_ms: i64,
}

impl ConsoleKind {
    fn as_str(self) -> &'static str {
        match self {
            ConsoleKind::Graphics => "graphics",
            ConsoleKind::Serial => "serial",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "graphics" => Some(ConsoleKind::Graphics),
            "serial" => Some(ConsoleKind::Serial),
            _ => None,
        }
    }
}

/// The token table.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pool: Pool,
}

impl Tokens {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    #[cfg(test)]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Stores a token's row under its hash, purging expired rows first.
    pub async fn insert(&self, hash: &str, row: &TokenRow, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM console_tokens WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_tokens (hash, kind, view_only, vm_id, user_id, node_id, boot,
             record, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(hash)
        .bind(row.kind.as_str())
        .bind(db::Flag(row.view_only))
        .bind(row.vm_id.to_string())
        .bind(row.user_id.to_string())
        .bind(row.node_id.to_string())
        .bind(&row.boot)
        .bind(row.record.to_string())
        .bind(row.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the row of `hash` out, whatever it holds (single use): the
    /// caller checks kind and expiry. `None`: unknown or already used.
    pub async fn take(&self, hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
        use sqlx::Row;
        let row = sqlx::query(
            "DELETE FROM console_tokens WHERE hash = $1
             RETURNING kind, view_only, vm_id, user_id, node_id, boot, record, expires_ms",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let uuid = |col: &str| db::uuid(&r, col);
        let kind: String = r.try_get("kind")?;
        Ok(Some(TokenRow {
            kind: ConsoleKind::parse(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "kind".into(),
                source: format!("unknown console kind {kind:?}").into(),
            })?,
            view_only: r.try_get::<db::Flag, _>("view_only")?.into(),
            vm_id: uuid("vm_id")?,
            user_id: uuid("user_id")?,
            node_id: uuid("node_id")?,
            boot: r.try_get("boot")?,
            record: uuid("record")?,
            expires_ms: r.try_get("expires_ms")?,
        }))
    }

    /// Voids every outstanding token of a VM (it stopped, was reset or moved).
    pub async fn void_vm(&self, vm_id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM console_tokens WHERE vm_id = $1")
            .bind(vm_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
