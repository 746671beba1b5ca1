//! Database connection, migrations and the helpers every module's queries share.
//!
//! Two backends behind one [`Pool`] (sqlx's `Any` driver): SQLite (a file in
//! the data dir) is the default for one-machine installs; PostgreSQL
//! (`--database-url postgres://…`) is the one several servers share. Each
//! backend has its own migrations (`migrations/sqlite/`, `migrations/postgres/`,
//! same version numbers, see `migrations/README.md`), applied at start-up by
//! every subcommand, so the CLI and the server always see the same schema.
//!
//! The queries are written once for both: `$N` placeholders, RFC 3339 UTC text
//! timestamps, integers (`i64`) for counts and 0/1 flags, text for UUIDs. The
//! few places the dialects differ ask [`backend`]. Uniqueness is enforced by
//! the database, and [`unique_violation`] tells a module which constraint
//! fired so it can answer 409 with a precise code.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

pub type Pool = sqlx::AnyPool;
pub type Row = sqlx::any::AnyRow;
pub type Conn = sqlx::AnyConnection;
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite://PATH or postgres://USER@HOST/DB)")]
    UnsupportedUrl,
    /// A newer pvce migrated the database (a rolling upgrade, src/upgrade.rs).
    #[error(
        "the database has migration {applied}, which this pvce (schema version {known}) does not know: a newer pvce has upgraded it; run that version"
    )]
    SchemaNewer { applied: i64, known: i64 },
}

/// A migration run's error, naming a database newer than this build plainly.
fn migrate_error(e: sqlx::migrate::MigrateError) -> DbError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(applied) => DbError::SchemaNewer {
            applied,
            known: schema_version(),
        },
        other => DbError::Migrate(other),
    }
}

/// Which database a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The backend of `pool`.
pub fn backend(pool: &Pool) -> Backend {
    match pool.connect_options().database_url.scheme() {
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    }
}

/// Connections per server. PostgreSQL's are shared by every server of a
/// cluster (its `max_connections` must cover servers × this).
const MAX_CONNECTIONS: u32 = 8;

/// How long a request waits for a free connection before it fails (503):
/// while the database is down or restarting, requests fail fast instead of
/// piling up for sqlx's default 30 s.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite waits this long for another writer before answering "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's migrations (`migrations/sqlite/`), built into the binary.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// PostgreSQL's migrations (`migrations/postgres/`), built into the binary.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The schema version this build brings: the last migration's number, the
/// same for both backends (`migrations/README.md`).
pub fn schema_version() -> i64 {
    SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Opens the pool and runs pending migrations.
pub async fn connect(url: &str) -> Result<Pool, DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).ok_or(DbError::UnsupportedUrl)?;
    // Migrations run on a connection of their own, closed before the pool
    // opens: one of them loosens a CHECK constraint in place (SQLite 0012),
    // which a connection that parsed the old schema would keep enforcing.
    match backend {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                // WAL lets the HTTP handlers read while a long enrolment
                // transaction writes (the mode is stored in the file).
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let mut conn = options.connect().await?;
            SQLITE_MIGRATIONS
                .run(&mut conn)
                .await
                .map_err(migrate_error)?;
            conn.close().await?;
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            POSTGRES_MIGRATIONS
                .run(&mut conn)
                .await
                .map_err(migrate_error)?;
            conn.close().await?;
        }
    }
    let options = AnyConnectOptions::from_str(url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Per-connection settings the Any driver's URL cannot carry.
                    sqlx::query(&format!(
                        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {}",
                        SQLITE_BUSY_TIMEOUT.as_millis()
                    ))
                    .execute(conn)
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// The advisory lock every PostgreSQL write transaction of [`begin`] takes:
/// one writer at a time across the cluster, as SQLite's `BEGIN IMMEDIATE`
/// gives on one machine, so every read-check-write the modules do inside a
/// transaction stays race-free whichever server runs it.
const WRITE_LOCK: i64 = 0x7076_6365; // "pvce"

/// Begins a write transaction that no other writer interleaves with.
///
/// SQLite: `BEGIN IMMEDIATE` takes the write lock up front, waiting out other
/// writers under the busy timeout; a deferred transaction that reads first
/// and writes later fails at once with `SQLITE_BUSY` when another writer
/// committed in between (seen under load as 500s and a "degraded" health),
/// since SQLite cannot upgrade its stale read snapshot. PostgreSQL: the
/// transaction-scoped advisory lock [`WRITE_LOCK`].
///
/// A connection still inside a transaction — its COMMIT or ROLLBACK failed,
/// e.g. on a full disk — is closed instead of reused: beginning on it would
/// fail, and its stale transaction must not swallow the next writer's work.
pub async fn begin(pool: &Pool) -> Result<Tx, sqlx::Error> {
    loop {
        let conn = pool.acquire().await?;
        if conn.is_in_transaction() {
            conn.close().await?;
            continue;
        }
        return match backend(pool) {
            Backend::Sqlite => sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await,
            Backend::Postgres => {
                let mut tx = sqlx::Transaction::begin(conn, None).await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        };
    }
}

/// A 0/1 flag column, read and written as a Rust `bool`. Both schemas store
/// flags as integers (SQLite has no boolean; PostgreSQL's `BIGINT` keeps the
/// SQL's `flag = 0` comparisons portable). sqlx's `Any` driver decodes a
/// `bool` only from a boolean value and encodes it as one, which fails on
/// both: bind and read flags through this type instead. A boolean
/// expression (`EXISTS (…)` on PostgreSQL) is read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

impl sqlx::Type<sqlx::Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        ty.kind().is_integer() || ty.kind() == sqlx::any::AnyTypeInfoKind::Bool
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for Flag {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&i64::from(self.0), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::ValueRef;
        if value.type_info().kind() == sqlx::any::AnyTypeInfoKind::Bool {
            Ok(Flag(<bool as sqlx::Decode<sqlx::Any>>::decode(value)?))
        } else {
            Ok(Flag(<i64 as sqlx::Decode<sqlx::Any>>::decode(value)? != 0))
        }
    }
}

/// A nullable `DOUBLE PRECISION` value to bind. Bind `Option<f64>` through
/// this type, never directly: sqlx 0.8's `Any` driver turns a NULL of type
/// double into a PostgreSQL `float4` parameter (its `Real`/`Double` null
/// kinds are swapped, sqlx-core `any/arguments.rs`), so a statement first
/// run with NULL is prepared — and cached — with a `float4` parameter, and
/// every later run with a number fails ("incorrect binary data format in
/// bind parameter"). This encodes a number as `f64` and NULL as the kind
/// the driver maps to `float8`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Real(pub Option<f64>);

impl sqlx::Type<sqlx::Any> for Real {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <f64 as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for Real {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self.0 {
            Some(v) => <f64 as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&v, buf),
            // The swapped kind: becomes a float8 NULL on PostgreSQL (a plain
            // NULL on SQLite).
            None => <Option<f32> as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&None, buf),
        }
    }
}

/// The row `sql` selects with `binds`, mapped by `from_row`; `None` when
/// there is none.
pub async fn fetch_row<T>(
    pool: &Pool,
    sql: &str,
    binds: &[&str],
    from_row: impl Fn(&Row) -> Result<T, sqlx::Error>,
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

/// `sql` for `pool`'s database: SQLite's planner hints (`INDEXED BY <index>`,
/// `NOT INDEXED`), which some hot queries need to pick the right index, are
/// removed for PostgreSQL, whose planner has no such syntax.
pub fn index_hints<'a>(pool: &Pool, sql: &'a str) -> std::borrow::Cow<'a, str> {
    if backend(pool) == Backend::Sqlite {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(strip_index_hints(sql))
}

fn strip_index_hints(sql: &str) -> String {
    // Word by word (runs of white space become one space, which no query
    // that uses hints has inside a quoted literal).
    let words: Vec<&str> = sql.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        match (words[i], words.get(i + 1)) {
            ("INDEXED", _) if out.last() == Some(&"NOT") => {
                out.pop();
                i += 1;
            }
            ("INDEXED", Some(&"BY")) => i += 3,
            (w, _) => {
                out.push(w);
                i += 1;
            }
        }
    }
    out.join(" ")
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
pub fn uuid(row: &Row, col: &str) -> Result<uuid::Uuid, sqlx::Error> {
    use sqlx::Row;
    parse_uuid(&row.try_get::<String, _>(col)?)
}

/// Reads a nullable UUID column.
pub fn opt_uuid(row: &Row, col: &str) -> Result<Option<uuid::Uuid>, sqlx::Error> {
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
/// that SQLite names in its message (SQLite reports columns, not constraint
/// names). PostgreSQL reports the constraint's name, and the PostgreSQL
/// schema names each constraint with that same text (`migrations/README.md`).
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    db.message()
        .strip_prefix("UNIQUE constraint failed: ")
        .or(db.constraint())
        .map(str::to_owned)
}

/// True if `err` (or an error it wraps) says the database cannot be reached
/// right now — the connection failed or was cut, the pool found none in
/// time, or the PostgreSQL server is shutting down or starting (SQLSTATE
/// classes 08 and 57P) — as opposed to a query that is wrong. The API
/// answers these with 503 so clients retry, and the pool reconnects by itself.
///
/// Module errors wrap `sqlx::Error` with `#[error(transparent)]`, which
/// hides the `sqlx::Error` itself from the source chain (a transparent
/// error's `source()` is its inner error's source): so besides the typed
/// check, each error's text is matched against sqlx's own messages for these
/// cases (the unit test below pins them to sqlx's wording).
pub fn is_unavailable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => return true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    if code.starts_with("08") || code.starts_with("57P") {
                        return true;
                    }
                }
                _ => {}
            }
        }
        let text = e.to_string();
        if UNAVAILABLE_TEXTS.iter().any(|t| text.starts_with(t))
            || (text.starts_with("error returned from database: ")
                && PG_UNAVAILABLE_TEXTS.iter().any(|t| text.contains(t)))
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// How sqlx words the connection-level errors (their `Display`).
const UNAVAILABLE_TEXTS: [&str; 5] = [
    "error communicating with database",
    "error occurred while attempting to establish a TLS connection",
    "pool timed out while waiting for an open connection",
    "attempted to acquire a connection on a closed pool",
    "attempted to communicate with a crashed background worker",
];

/// PostgreSQL's messages for SQLSTATE 57P01–57P03 (shutdown, start-up).
const PG_UNAVAILABLE_TEXTS: [&str; 4] = [
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
];

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

    #[test]
    fn index_hints_are_stripped_word_by_word() {
        assert_eq!(
            strip_index_hints("SELECT a FROM t INDEXED BY t_a\n WHERE a = 1"),
            "SELECT a FROM t WHERE a = 1"
        );
        assert_eq!(
            strip_index_hints("FROM n CROSS JOIN s NOT INDEXED\n WHERE x"),
            "FROM n CROSS JOIN s WHERE x"
        );
    }

    #[derive(Debug, thiserror::Error)]
    enum Wrapper {
        #[error(transparent)]
        Db(#[from] sqlx::Error),
    }

    #[test]
    fn connection_failures_are_unavailable_even_behind_a_transparent_wrapper() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(io()),
            sqlx::Error::Tls(Box::new(io())),
        ] {
            let text = e.to_string();
            assert!(is_unavailable(&Wrapper::from(e)), "{text}");
        }
        for e in [
            sqlx::Error::RowNotFound,
            sqlx::Error::Protocol("bad".into()),
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            let text = e.to_string();
            assert!(!is_unavailable(&e), "{text}");
            assert!(!is_unavailable(&Wrapper::from(e)), "{text}");
        }
    }
}
