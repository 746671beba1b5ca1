//! `pvce db migrate-from-sqlite`: moves an installation's SQLite database
//! into an empty PostgreSQL database, so a lab that outgrows one machine
//! keeps its users, courses, tickets and history.
//!
//! Invariants:
//! - both databases are at this build's schema version (the SQLite source is
//!   refused at any other version, so the move never rewrites it; the target
//!   is migrated by [`db::connect`]); the tables and columns copied are the
//!   ones PostgreSQL's catalog lists, and every SQLite table must have its
//!   counterpart (only SQLite's own — `sqlite_*`, `_sqlx_migrations`, virtual
//!   tables such as the FTS5 index `kb_fts` and their shadow tables — are
//!   left behind: PostgreSQL searches the knowledge base without them);
//! - the target must hold no data ([`SEEDED`] aside): the move never merges
//!   into a live database;
//! - all or nothing: one PostgreSQL transaction (holding [`db::begin`]'s
//!   write lock and, through `ALTER TABLE`, every table's exclusive lock)
//!   copies every table parents first, moves the identity sequences past the
//!   copied keys and compares row counts and key checksums on both sides; a
//!   difference rolls everything back. The source is read in one read
//!   transaction, a consistent snapshot; writes a running server makes after
//!   it are not moved, which is why the server must be stopped meanwhile;
//! - the copied rows already hold what the triggers maintain (the desk's
//!   figures rollup, `ticket_clock_facts`), so user triggers are disabled
//!   during the copy — they would count every ticket twice and refuse the
//!   audit log's seeded horizon row being replaced — and enabled again
//!   before the commit. Foreign keys stay checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use futures::TryStreamExt;
use sha2::Digest;
use sqlx::Row as _;

use crate::db::{self, Backend, DbError};

/// Rows per multi-row INSERT (fewer for wide tables: PostgreSQL takes at
/// most 65,535 parameters per statement).
const BATCH_ROWS: usize = 500;
const MAX_PARAMS: usize = 65_535;

/// Tables the PostgreSQL migrations fill themselves (0041's last INSERTs:
/// the notification cursor and the audit horizon), so every fresh target has
/// a row in each. Their rows do not make a target "live"; the source's own
/// rows replace them. A future migration that seeds another table must be
/// named here (the move into a fresh database then refuses, and
/// tests/it/dbmove.rs fails).
pub const SEEDED: &[&str] = &["notify_cursor", "audit_horizon"];

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the source must be a SQLite database (sqlite://…), not {0}")]
    SourceNotSqlite(String),
    #[error("the target must be a PostgreSQL database (postgres://…)")]
    TargetNotPostgres,
    #[error("no SQLite database at {0}")]
    NoSource(PathBuf),
    #[error("{0} is not a pvce database (it has no migration history)")]
    NotPvce(PathBuf),
    #[error(
        "the SQLite database is at schema version {source_version}, this pvce at {build}: {hint}"
    )]
    SourceVersion {
        source_version: i64,
        build: i64,
        hint: &'static str,
    },
    #[error("after migrating, the PostgreSQL database is at schema version {target}, not {build}")]
    TargetVersion { target: i64, build: i64 },
    #[error(
        "the target database already holds data ({0}); pvce never merges into a live database: give it an empty one"
    )]
    TargetNotEmpty(String),
    #[error("SQLite table {0} has no PostgreSQL counterpart (schemas differ)")]
    MissingTable(String),
    #[error("{table}.{column}: PostgreSQL type {ty} is not one pvce copies")]
    UnsupportedType {
        table: String,
        column: String,
        ty: String,
    },
    #[error("{table}.{column}: the SQLite value cannot be read as {ty}: {source}")]
    BadValue {
        table: String,
        column: String,
        ty: &'static str,
        source: sqlx::Error,
    },
    #[error("the tables' foreign keys form a cycle: {0}")]
    TableCycle(String),
    #[error("{table}: its rows reference each other in a cycle through {column}")]
    RowCycle { table: String, column: String },
    #[error("{table}: a foreign key on several columns to itself, which pvce cannot order")]
    CompositeSelfKey { table: String },
    #[error("verification failed, nothing was committed: {0}")]
    Verify(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// What the move did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    /// Rows inserted into PostgreSQL.
    pub copied: u64,
    /// `COUNT(*)` on both sides after the copy (equal, or nothing committed).
    pub source_rows: i64,
    pub target_rows: i64,
    /// Order-independent checksum of the primary keys (all columns for a
    /// table without one), equal on both sides.
    pub checksum: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub schema_version: i64,
    /// In copy order (parents first).
    pub tables: Vec<TableReport>,
}

/// How a PostgreSQL column's values are read from SQLite and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bytes,
}

impl Kind {
    fn of(pg_type: &str) -> Option<Kind> {
        match pg_type {
            "bigint" | "integer" | "smallint" => Some(Kind::Int),
            "double precision" | "real" => Some(Kind::Float),
            "text" => Some(Kind::Text),
            "bytea" => Some(Kind::Bytes),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "BIGINT",
            Kind::Float => "DOUBLE PRECISION",
            Kind::Text => "TEXT",
            Kind::Bytes => "BYTEA",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    /// Reads column `i` of `row` as `kind`. A REAL column may hold an
    /// integer in SQLite (no affinity conversion on some paths): widened.
    fn read(row: &db::Row, i: usize, kind: Kind) -> Result<Value, sqlx::Error> {
        Ok(match kind {
            Kind::Int => Value::Int(row.try_get(i)?),
            Kind::Float => match row.try_get::<Option<f64>, _>(i) {
                Ok(v) => Value::Float(v),
                Err(e) => Value::Float(
                    row.try_get::<Option<i64>, _>(i)
                        .map_err(|_| e)?
                        .map(|n| n as f64),
                ),
            },
            Kind::Text => Value::Text(row.try_get(i)?),
            Kind::Bytes => Value::Bytes(row.try_get(i)?),
        })
    }

    /// The value as a self-reference key (`None` for NULL).
    fn key(&self) -> Option<String> {
        match self {
            Value::Int(v) => v.map(|n| n.to_string()),
            Value::Float(v) => v.map(|f| f.to_string()),
            Value::Text(v) => v.clone(),
            Value::Bytes(v) => v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// Feeds a tagged, length-prefixed encoding to `h` (no two different
    /// value lists feed the same bytes).
    fn hash_into(&self, h: &mut sha2::Sha256) {
        fn tagged(h: &mut sha2::Sha256, tag: u8, bytes: Option<&[u8]>) {
            match bytes {
                None => h.update([0]),
                Some(b) => {
                    h.update([tag]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
        }
        match self {
            Value::Int(v) => tagged(h, 1, v.map(i64::to_le_bytes).as_ref().map(|b| &b[..])),
            Value::Float(v) => tagged(
                h,
                2,
                v.map(|f| f.to_bits().to_le_bytes())
                    .as_ref()
                    .map(|b| &b[..]),
            ),
            Value::Text(v) => tagged(h, 3, v.as_deref().map(str::as_bytes)),
            Value::Bytes(v) => tagged(h, 4, v.as_deref()),
        }
    }
}

/// The checksum of one row's key values: the first 8 bytes of their SHA-256.
/// Rows' checksums are added (wrapping), so the table's does not depend on
/// the order the rows are read in.
fn row_checksum<'a>(values: impl Iterator<Item = &'a Value>) -> u64 {
    let mut h = sha2::Sha256::new();
    for v in values {
        v.hash_into(&mut h);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// One PostgreSQL table as the catalog describes it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<(String, Kind)>,
    /// Indices into `columns` of the primary key (all columns if none).
    key: Vec<usize>,
    /// Identity (or serial) columns: their sequences move past the copy.
    identity: Vec<String>,
    /// A single-column foreign key to the table itself: (column, referenced
    /// column) indices; its rows are inserted parents first.
    self_ref: Option<(usize, usize)>,
}

/// Orders `tables` so that every table comes after the tables it references
/// (`edges`: (child, parent) pairs; a table referencing itself is ordered
/// row by row instead, see [`rows_parents_first`]). Each step takes the
/// first table of `tables` whose parents are all placed. A cycle among several tables is an error naming them.
pub fn parents_first(
    tables: &[String],
    edges: &[(String, String)],
) -> Result<Vec<String>, MoveError> {
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for t in tables {
        parents.entry(t).or_default();
    }
    for (child, parent) in edges {
        if child != parent
            && parents.contains_key(parent.as_str())
            && let Some(p) = parents.get_mut(child.as_str())
        {
            p.insert(parent);
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        let next = tables.iter().find(|t| {
            !done.contains(t.as_str()) && parents[t.as_str()].iter().all(|p| done.contains(p))
        });
        match next {
            Some(t) => {
                done.insert(t);
                order.push(t.clone());
            }
            None => {
                let left: Vec<&str> = tables
                    .iter()
                    .map(String::as_str)
                    .filter(|t| !done.contains(t))
                    .collect();
                return Err(MoveError::TableCycle(left.join(", ")));
            }
        }
    }
    Ok(order)
}

/// Rows that reference each other in a ring (none of them can go first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCycle;

/// Orders rows of a table that references itself so that each row comes
/// after the row its `parent` names (`None`, or a key not in the table,
/// which the foreign key then reports, needs no wait). Returns indices into
/// `keys`; `Err` when rows form a cycle.
pub fn rows_parents_first(
    keys: &[Option<String>],
    parents: &[Option<String>],
) -> Result<Vec<usize>, RowCycle> {
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.as_deref().map(|k| (k, i)))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ready = Vec::new();
    for (i, p) in parents.iter().enumerate() {
        match p.as_deref().and_then(|p| index.get(p)) {
            Some(&parent) => children.entry(parent).or_default().push(i),
            None => ready.push(i),
        }
    }
    let mut order = Vec::with_capacity(keys.len());
    // Breadth-first from the roots, children in the rows' order.
    let mut at = 0;
    order.extend(ready);
    while at < order.len() {
        if let Some(c) = children.remove(&order[at]) {
            order.extend(c);
        }
        at += 1;
    }
    if order.len() == keys.len() {
        Ok(order)
    } else {
        Err(RowCycle)
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Moves the SQLite database at `from` (a `sqlite://` URL) into the empty
/// PostgreSQL database at `to`.
pub async fn migrate_from_sqlite(from: &str, to: &str) -> Result<Report, MoveError> {
    sqlx::any::install_default_drivers();
    if Backend::of_url(from) != Some(Backend::Sqlite) {
        return Err(MoveError::SourceNotSqlite(from.to_owned()));
    }
    if Backend::of_url(to) != Some(Backend::Postgres) {
        return Err(MoveError::TargetNotPostgres);
    }
    let build = db::schema_version();
    check_source_version(from, build).await?;
    let source = db::connect(from).await?;
    let target = db::connect(to).await?;
    let target_version: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations",
    )
    .fetch_one(&target)
    .await?;
    if target_version != build {
        return Err(MoveError::TargetVersion {
            target: target_version,
            build,
        });
    }
    let result = copy(&source, &target, build).await;
    source.close().await;
    target.close().await;
    result
}

/// Refuses a source at another schema version than this build's, before
/// anything (the migrator included) writes to it.
async fn check_source_version(from: &str, build: i64) -> Result<(), MoveError> {
    use sqlx::ConnectOptions;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(from)?.read_only(true);
    let path = options.get_filename().to_path_buf();
    if !path.is_file() {
        return Err(MoveError::NoSource(path));
    }
    let mut conn = options.connect().await?;
    let has_history: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await?;
    if has_history == 0 {
        return Err(MoveError::NotPvce(path));
    }
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1",
    )
    .fetch_one(&mut conn)
    .await?;
    sqlx::Connection::close(conn).await?;
    match version.cmp(&build) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(MoveError::SourceVersion {
            source_version: version,
            build,
            hint: "start this pvce version on it once (it migrates the database at start-up), stop it, then move",
        }),
        std::cmp::Ordering::Greater => Err(MoveError::SourceVersion {
            source_version: version,
            build,
            hint: "a newer pvce wrote it: move it with that version",
        }),
    }
}

/// The base tables PostgreSQL has (its migration history aside), their
/// columns, keys and identity columns, and the foreign-key edges.
async fn catalog(tx: &mut db::Tx) -> Result<(Vec<Table>, Vec<(String, String)>), MoveError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&mut **tx)
    .await?;
    let rows = sqlx::query(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT), CAST(data_type AS TEXT),
                CAST(CASE WHEN is_identity = 'YES' OR column_default LIKE 'nextval(%' THEN 1 ELSE 0 END AS BIGINT)
         FROM information_schema.columns WHERE table_schema = current_schema()
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut tables: BTreeMap<String, Table> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                Table {
                    name: n.clone(),
                    columns: Vec::new(),
                    key: Vec::new(),
                    identity: Vec::new(),
                    self_ref: None,
                },
            )
        })
        .collect();
    for r in &rows {
        let (table, column, ty, identity): (String, String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let Some(t) = tables.get_mut(&table) else {
            continue; // a view's columns
        };
        let kind = Kind::of(&ty).ok_or_else(|| MoveError::UnsupportedType {
            table: table.clone(),
            column: column.clone(),
            ty: ty.clone(),
        })?;
        if identity != 0 {
            t.identity.push(column.clone());
        }
        t.columns.push((column, kind));
    }
    let keys = sqlx::query(
        "SELECT CAST(c.relname AS TEXT), CAST(a.attname AS TEXT)
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL unnest(CAST(i.indkey AS int2[])) WITH ORDINALITY AS u(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum
         WHERE i.indisprimary AND n.nspname = current_schema()
         ORDER BY 1, u.ord",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in &keys {
        let (table, column): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if let Some(t) = tables.get_mut(&table)
            && let Some(i) = t.columns.iter().position(|(c, _)| *c == column)
        {
            t.key.push(i);
        }
    }
    let fks = sqlx::query(
        "SELECT CAST(k.conname AS TEXT), CAST(c.relname AS TEXT), CAST(p.relname AS TEXT),
                CAST(a.attname AS TEXT), CAST(pa.attname AS TEXT)
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_class p ON p.oid = k.confrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS u(ck, pk)
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.ck
         JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = u.pk
         WHERE k.contype = 'f' AND n.nspname = current_schema()
         ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut edges = Vec::new();
    // Self-references by constraint: (table, [(column, referenced)]).
    let mut selfs: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for r in &fks {
        let (name, child, parent, col, pcol): (String, String, String, String, String) = (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        );
        if child == parent {
            selfs
                .entry((child.clone(), name))
                .or_default()
                .push((col, pcol));
        }
        edges.push((child, parent));
    }
    for ((table, _), cols) in selfs {
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        let [(col, pcol)] = cols.as_slice() else {
            return Err(MoveError::CompositeSelfKey { table });
        };
        if t.self_ref.is_some() {
            return Err(MoveError::CompositeSelfKey { table });
        }
        let pos = |name: &str| t.columns.iter().position(|(c, _)| c == name);
        if let (Some(c), Some(p)) = (pos(col), pos(pcol)) {
            t.self_ref = Some((c, p));
        }
    }
    for t in tables.values_mut() {
        if t.key.is_empty() {
            t.key = (0..t.columns.len()).collect();
        }
    }
    edges.sort();
    edges.dedup();
    Ok((tables.into_values().collect(), edges))
}

/// SQLite's tables that PostgreSQL need not have: SQLite's own, the
/// migration history, virtual tables and their shadow tables (`<vt>_*`).
async fn sqlite_tables(src: &mut db::Tx) -> Result<Vec<String>, MoveError> {
    let rows = sqlx::query(
        "SELECT name, CAST(COALESCE(sql, '') AS TEXT) FROM sqlite_schema WHERE type = 'table' ORDER BY name",
    )
    .fetch_all(&mut **src)
    .await?;
    let mut all = Vec::new();
    let mut virtual_tables = Vec::new();
    for r in &rows {
        let (name, sql): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE") {
            virtual_tables.push(name.clone());
        }
        all.push(name);
    }
    Ok(all
        .into_iter()
        .filter(|n| {
            !n.starts_with("sqlite_")
                && n != "_sqlx_migrations"
                && !virtual_tables
                    .iter()
                    .any(|v| n == v || n.starts_with(&format!("{v}_")))
        })
        .collect())
}

async fn copy(source: &db::Pool, target: &db::Pool, build: i64) -> Result<Report, MoveError> {
    // One read transaction: every table and count from the same snapshot.
    let mut src = source.begin().await?;
    let mut tx = db::begin(target).await?;
    let (tables, edges) = catalog(&mut tx).await?;
    let by_name: HashMap<&str, &Table> = tables.iter().map(|t| (t.name.as_str(), t)).collect();
    for name in sqlite_tables(&mut src).await? {
        if !by_name.contains_key(name.as_str()) {
            return Err(MoveError::MissingTable(name));
        }
    }
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let order = parents_first(&names, &edges)?;

    // Locks every table against other sessions until the commit, too.
    for t in &order {
        sqlx::query(&format!("ALTER TABLE {} DISABLE TRIGGER USER", quote(t)))
            .execute(&mut *tx)
            .await?;
    }
    let mut holding = Vec::new();
    for t in &order {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quote(t)))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 && !SEEDED.contains(&t.as_str()) {
            holding.push(format!("{t}: {n} rows"));
        }
    }
    if !holding.is_empty() {
        return Err(MoveError::TargetNotEmpty(holding.join(", ")));
    }
    for t in SEEDED {
        if by_name.contains_key(t) {
            sqlx::query(&format!("DELETE FROM {}", quote(t)))
                .execute(&mut *tx)
                .await?;
        }
    }

    let mut reports = Vec::with_capacity(order.len());
    for name in &order {
        let table = by_name[name.as_str()];
        let (copied, checksum) = copy_table(&mut src, &mut tx, table).await?;
        reports.push(TableReport {
            table: name.clone(),
            copied,
            source_rows: 0,
            target_rows: 0,
            checksum,
        });
    }
    for t in &tables {
        for col in &t.identity {
            sqlx::query(&format!(
                "SELECT CAST(setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({c}), 1), MAX({c}) IS NOT NULL) AS BIGINT) FROM {t}",
                c = quote(col),
                t = quote(&t.name)
            ))
            .bind(quote(&t.name))
            .bind(col)
            .fetch_one(&mut *tx)
            .await?;
        }
    }

    // Verification: counts on both sides, and the key checksum read back.
    let mut wrong = Vec::new();
    for r in &mut reports {
        let table = by_name[r.table.as_str()];
        r.source_rows = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quote(&r.table)))
            .fetch_one(&mut *src)
            .await?;
        r.target_rows = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quote(&r.table)))
            .fetch_one(&mut *tx)
            .await?;
        let target_sum = key_checksum(&mut tx, table).await?;
        if r.source_rows != r.target_rows || r.copied != r.source_rows as u64 {
            wrong.push(format!(
                "{}: {} rows in SQLite, {} copied, {} in PostgreSQL",
                r.table, r.source_rows, r.copied, r.target_rows
            ));
        } else if target_sum != r.checksum {
            wrong.push(format!("{}: the keys' checksums differ", r.table));
        }
    }
    if !wrong.is_empty() {
        return Err(MoveError::Verify(wrong.join("; ")));
    }
    for t in &order {
        sqlx::query(&format!("ALTER TABLE {} ENABLE TRIGGER USER", quote(t)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    src.rollback().await?;
    Ok(Report {
        schema_version: build,
        tables: reports,
    })
}

/// Copies one table in batches; returns the rows copied and their key checksum.
async fn copy_table(
    src: &mut db::Tx,
    tx: &mut db::Tx,
    table: &Table,
) -> Result<(u64, u64), MoveError> {
    // A PostgreSQL column named rowid stands for SQLite's implicit rowid.
    // (unquoted: SQLite resolves the bare name to it).
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|(c, _)| {
            if c == "rowid" {
                "rowid".to_owned()
            } else {
                quote(c)
            }
        })
        .collect();
    let sql = format!("SELECT {} FROM {}", select.join(", "), quote(&table.name));
    let per_batch = BATCH_ROWS.min(MAX_PARAMS / table.columns.len().max(1));
    let mut checksum = 0u64;
    let mut copied = 0u64;
    let read = |row: &db::Row| -> Result<Vec<Value>, MoveError> {
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (c, k))| {
                Value::read(row, i, *k).map_err(|source| MoveError::BadValue {
                    table: table.name.clone(),
                    column: c.clone(),
                    ty: k.name(),
                    source,
                })
            })
            .collect()
    };
    if let Some((col, parent)) = table.self_ref {
        // Parents before children: the whole table in memory (such tables,
        // the template tree, are small).
        let rows: Vec<Vec<Value>> = sqlx::query(&sql)
            .fetch_all(&mut **src)
            .await?
            .iter()
            .map(read)
            .collect::<Result<_, _>>()?;
        let keys: Vec<Option<String>> = rows.iter().map(|r| r[parent].key()).collect();
        let parents: Vec<Option<String>> = rows.iter().map(|r| r[col].key()).collect();
        let order =
            rows_parents_first(&keys, &parents).map_err(|RowCycle| MoveError::RowCycle {
                table: table.name.clone(),
                column: table.columns[col].0.clone(),
            })?;
        let mut rows: Vec<Option<Vec<Value>>> = rows.into_iter().map(Some).collect();
        let ordered: Vec<Vec<Value>> = order.iter().filter_map(|&i| rows[i].take()).collect();
        for batch in ordered.chunks(per_batch) {
            for r in batch {
                checksum = checksum.wrapping_add(row_checksum(table.key.iter().map(|&i| &r[i])));
            }
            insert(tx, table, batch).await?;
            copied += batch.len() as u64;
        }
        return Ok((copied, checksum));
    }
    let mut stream = sqlx::query(&sql).fetch(&mut **src);
    let mut batch = Vec::with_capacity(per_batch);
    while let Some(row) = stream.try_next().await? {
        let r = read(&row)?;
        checksum = checksum.wrapping_add(row_checksum(table.key.iter().map(|&i| &r[i])));
        batch.push(r);
        if batch.len() == per_batch {
            insert(tx, table, &batch).await?;
            copied += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        insert(tx, table, &batch).await?;
        copied += batch.len() as u64;
    }
    Ok((copied, checksum))
}

/// One multi-row INSERT of `rows`.
async fn insert(tx: &mut db::Tx, table: &Table, rows: &[Vec<Value>]) -> Result<(), MoveError> {
    let columns: Vec<String> = table.columns.iter().map(|(c, _)| quote(c)).collect();
    let width = columns.len();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote(&table.name),
        columns.join(", ")
    );
    for r in 0..rows.len() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(r * width + c + 1).to_string());
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for row in rows {
        for v in row {
            q = match v {
                Value::Int(v) => q.bind(*v),
                Value::Float(v) => q.bind(db::Real(*v)),
                Value::Text(v) => q.bind(v.clone()),
                Value::Bytes(v) => q.bind(v.clone()),
            };
        }
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The key checksum of `table` as PostgreSQL now holds it.
async fn key_checksum(tx: &mut db::Tx, table: &Table) -> Result<u64, MoveError> {
    let cols: Vec<String> = table
        .key
        .iter()
        .map(|&i| quote(&table.columns[i].0))
        .collect();
    let sql = format!("SELECT {} FROM {}", cols.join(", "), quote(&table.name));
    let mut stream = sqlx::query(&sql).fetch(&mut **tx);
    let mut sum = 0u64;
    while let Some(row) = stream.try_next().await? {
        let values: Vec<Value> = table
            .key
            .iter()
            .enumerate()
            .map(|(j, &i)| Value::read(&row, j, table.columns[i].1))
            .collect::<Result<_, _>>()?;
        sum = sum.wrapping_add(row_checksum(values.iter()));
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn e(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn parents_come_before_their_children() {
        let tables = s(&["tickets", "ticket_events", "users", "courses", "audit_log"]);
        let edges = e(&[
            ("ticket_events", "tickets"),
            ("ticket_events", "users"),
            ("tickets", "users"),
            ("tickets", "courses"),
            ("courses", "users"),
        ]);
        let order = parents_first(&tables, &edges).expect("no cycle");
        let at = |t: &str| order.iter().position(|x| x == t).expect("ordered");
        for (child, parent) in &edges {
            assert!(at(parent) < at(child), "{parent} before {child}: {order:?}");
        }
        // Each step takes the first table, in the given order, whose parents
        // are all placed.
        assert_eq!(
            order,
            s(&["users", "courses", "tickets", "ticket_events", "audit_log"])
        );
    }

    #[test]
    fn a_self_reference_is_not_a_cycle_but_a_loop_of_tables_is() {
        let order =
            parents_first(&s(&["templates"]), &e(&[("templates", "templates")])).expect("ordered");
        assert_eq!(order, s(&["templates"]));
        let err = parents_first(
            &s(&["a", "b", "c", "d"]),
            &e(&[("a", "b"), ("b", "c"), ("c", "a"), ("a", "d")]),
        )
        .expect_err("a cycle");
        assert!(
            matches!(&err, MoveError::TableCycle(t) if t == "a, b, c"),
            "{err}"
        );
    }

    #[test]
    fn edges_to_tables_not_copied_are_ignored() {
        let order = parents_first(&s(&["a"]), &e(&[("a", "elsewhere")])).expect("ordered");
        assert_eq!(order, s(&["a"]));
    }

    #[test]
    fn rows_of_a_tree_go_parents_first() {
        let k = |v: &[Option<&str>]| v.iter().map(|x| x.map(str::to_owned)).collect::<Vec<_>>();
        // grandchild, child, root, other root
        let keys = k(&[Some("c2"), Some("c1"), Some("root"), Some("r2")]);
        let parents = k(&[Some("c1"), Some("root"), None, None]);
        assert_eq!(
            rows_parents_first(&keys, &parents).expect("ordered"),
            vec![2, 3, 1, 0]
        );
        let cyclic = k(&[Some("a"), Some("b")]);
        let cyclic_parents = k(&[Some("b"), Some("a")]);
        assert!(rows_parents_first(&cyclic, &cyclic_parents).is_err());
    }

    #[test]
    fn the_key_checksum_ignores_row_order_but_not_values() {
        let a = [Value::Text(Some("x".into())), Value::Int(Some(1))];
        let b = [Value::Text(Some("y".into())), Value::Int(None)];
        let one = row_checksum(a.iter()).wrapping_add(row_checksum(b.iter()));
        let two = row_checksum(b.iter()).wrapping_add(row_checksum(a.iter()));
        assert_eq!(one, two);
        let c = [Value::Text(Some("x".into())), Value::Int(Some(2))];
        assert_ne!(row_checksum(a.iter()), row_checksum(c.iter()));
        // NULL, empty text and zero are three different values.
        assert_ne!(
            row_checksum([Value::Text(None)].iter()),
            row_checksum([Value::Text(Some(String::new()))].iter())
        );
        assert_ne!(
            row_checksum([Value::Int(Some(0))].iter()),
            row_checksum([Value::Text(Some(String::new()))].iter())
        );
    }

    #[test]
    fn both_backends_are_at_the_same_schema_version() {
        let pg = db::POSTGRES_MIGRATIONS
            .iter()
            .map(|m| m.version)
            .max()
            .expect("ordered");
        assert_eq!(db::schema_version(), pg);
    }
}
