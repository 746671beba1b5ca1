//! Database connection, migrations and the helpers every module's queries share.
//!
//! SQLite (a file in the data dir) is the default; the schema lives in
//! `migrations/` and is applied at start-up by every subcommand, so the CLI and
//! the server always see the same schema. Timestamps are RFC 3339 UTC text.
//! Uniqueness is enforced by the database, and [`unique_violation`] tells a
//! module which constraint fired so it can answer 409 with a precise code.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Pool = sqlx::SqlitePool;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (only sqlite:// is supported by this build)")]
    UnsupportedUrl,
}

/// Opens the pool and runs pending migrations.
pub async fn connect(url: &str) -> Result<Pool, DbError> {
    if !url.starts_with("sqlite:") {
        return Err(DbError::UnsupportedUrl);
    }
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .foreign_keys(true)
        // WAL lets the HTTP handlers read while a long enrolment transaction writes.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    // Migrations run on a connection of their own, closed before the pool
    // opens: one of them loosens a CHECK constraint in place (0012), which
    // a connection that parsed the old schema would keep enforcing.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations").run(&mut conn).await?;
        conn.close().await?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Begins a write transaction. `BEGIN IMMEDIATE` takes the write lock up
/// front, waiting out other writers under the busy timeout; a deferred
/// transaction that reads first and writes later fails at once with
/// `SQLITE_BUSY` when another writer committed in between (seen under load
/// as 500s and a "degraded" health), since SQLite cannot upgrade its stale
/// read snapshot.
///
/// A connection still inside a transaction — its COMMIT or ROLLBACK failed,
/// e.g. on a full disk — is closed instead of reused: beginning on it would
/// fail, and its stale transaction must not swallow the next writer's work.
pub async fn begin(pool: &Pool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    use sqlx::Connection;
    loop {
        let conn = pool.acquire().await?;
        if conn.is_in_transaction() {
            conn.close().await?;
            continue;
        }
        return sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await;
    }
}

/// The row `sql` selects with `binds`, mapped by `from_row`; `None` when
/// there is none.
pub async fn fetch_row<T>(
    pool: &Pool,
    sql: &str,
    binds: &[&str],
    from_row: impl Fn(&sqlx::sqlite::SqliteRow) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_optional(pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Numbers the bare `?` placeholders of SQL composed at run time from
/// fragments (`$1`, `$2`, … in order), the form both SQLite and PostgreSQL
/// accept. Static queries are written with `$N` directly; a query assembled
/// from optional filters writes `?` in each fragment and numbers the whole
/// text once, so no fragment needs to know how many binds precede it. A `?`
/// inside a quoted SQL string literal is left alone.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut n = 0;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parses a UUID stored as text (a decode error if the database holds garbage).
pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, sqlx::Error> {
    uuid::Uuid::parse_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Reads a UUID column.
pub fn uuid(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<uuid::Uuid, sqlx::Error> {
    use sqlx::Row;
    parse_uuid(&row.try_get::<String, _>(col)?)
}

/// Reads a nullable UUID column.
pub fn opt_uuid(
    row: &sqlx::sqlite::SqliteRow,
    col: &str,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>(col)?
        .map(|s| parse_uuid(&s))
        .transpose()
}

/// Current time as RFC 3339 UTC text (the format stored and returned everywhere).
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

pub fn format_time(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An instant as Unix milliseconds (how loop clocks' instants are stored).
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant of stored Unix milliseconds.
pub fn from_unix_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// If `err` is a UNIQUE/PRIMARY KEY violation, returns the `table.column[, ...]`
/// that SQLite names in its message (SQLite reports columns, not constraint names).
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    db.message()
        .strip_prefix("UNIQUE constraint failed: ")
        .map(str::to_owned)
}

/// True if `err` is a foreign-key violation (something still references the row).
pub fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_foreign_key_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_counts_placeholders_outside_quoted_text() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?) AND d = '?' LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) AND d = '?' LIMIT $4"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        // A doubled quote inside a literal closes and reopens it.
        assert_eq!(
            numbered("SELECT 'it''s ?' WHERE x = ?"),
            "SELECT 'it''s ?' WHERE x = $1"
        );
    }
}
