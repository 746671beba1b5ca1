//! The knowledge base: articles (symptom, cause, fix; zh-CN or English)
//! written by staff, from a resolved ticket or from scratch; full-text search
//! that works for Chinese and English; suggestions for a report being
//! written; deflection (a reporter whom an article helped, so no report).
//!
//! Search uses SQLite FTS5 with the trigram tokenizer: any three characters
//! are a token, so Chinese text without word boundaries matches as well as
//! English. [`match_query`] (pure) turns free text into an FTS5 query:
//! English words of three or more letters, and every three-character window
//! of a Chinese run, each quoted (user text never reaches FTS5's syntax) and
//! OR-ed, ranked by bm25 — the more of them an article has, the higher.
//! Text too short for any trigram finds nothing rather than everything.
//!
//! Editing keeps history: every version of an article's text is a row of
//! `kb_revisions` (number, who, when) written in the same transaction as the
//! article and its search row, so an edit never loses the earlier text and
//! the index always holds the current one. An edit names the revision it
//! started from; a newer one meanwhile refuses it ([`DeskError::ArticleChanged`])
//! rather than silently overwriting a colleague. Retiring sets `archived_at`:
//! the article leaves search and suggestions (and deflection), only staff
//! and admins still read it, and it can no longer be edited.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::{DeskError, MAX_TEXT, MAX_TITLE, on_desk, required, text};
use crate::db::{self, Pool};
use crate::users::User;

/// At most this many terms go into one search.
const MAX_TERMS: usize = 40;
/// At most this many articles one search returns.
pub const MAX_RESULTS: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Article {
    pub id: Uuid,
    pub title: String,
    pub symptom: String,
    pub cause: String,
    pub fix: String,
    pub lang: String,
    pub ticket_id: Option<Uuid>,
    pub author_id: Uuid,
    pub author_name: String,
    pub created_at: String,
    pub updated_at: String,
    /// Reporters it helped instead of a report (deflections).
    pub helped: i64,
    /// The number of the current version (1 when never edited).
    pub revision: i64,
    /// Who wrote the current version, when it is not the first.
    pub editor_name: Option<String>,
    /// When it was retired (then only staff and admins read it).
    pub archived_at: Option<String>,
}

/// A new version of an article's text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleEdit {
    pub title: String,
    pub symptom: String,
    #[serde(default)]
    pub cause: String,
    pub fix: String,
    pub lang: Lang,
    /// The revision the edit started from; refused if another came since.
    pub revision: Option<i64>,
}

/// One version of an article's text, with who wrote it and when.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub number: i64,
    pub title: String,
    pub symptom: String,
    pub cause: String,
    pub fix: String,
    pub lang: String,
    pub editor_id: Uuid,
    pub editor_name: String,
    pub at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewArticle {
    pub title: String,
    pub symptom: String,
    #[serde(default)]
    pub cause: String,
    pub fix: String,
    pub lang: Lang,
    /// The resolved ticket it was written from.
    pub ticket_id: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Free text (a report's title and description, an error message…).
    pub q: Option<String>,
    pub lang: Option<Lang>,
    /// At most this many (1..=50, 10 when omitted).
    pub limit: Option<u32>,
    /// Staff and admins: list the retired articles instead.
    pub archived: Option<bool>,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xAC00..=0xD7AF)
}

/// The FTS5 query for free text, or `None` when it holds nothing to search.
pub fn match_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut push = |t: String| {
        if terms.len() < MAX_TERMS && !terms.contains(&t) {
            terms.push(t);
        }
    };
    // Runs of letters/digits; CJK characters form runs of their own.
    fn flush(run: &mut String, cjk: bool, push: &mut dyn FnMut(String)) {
        let chars: Vec<char> = run.chars().collect();
        if cjk {
            for w in chars.windows(3) {
                push(w.iter().collect());
            }
        } else if chars.len() >= 3 {
            push(run.to_lowercase());
        }
        run.clear();
    }
    let mut run = String::new();
    let mut run_cjk = false;
    for c in text.chars() {
        let cjk = is_cjk(c);
        if cjk || c.is_alphanumeric() || c == '_' {
            if !run.is_empty() && cjk != run_cjk {
                flush(&mut run, run_cjk, &mut push);
            }
            run_cjk = cjk;
            run.push(c);
        } else {
            flush(&mut run, run_cjk, &mut push);
        }
    }
    flush(&mut run, run_cjk, &mut push);
    if terms.is_empty() {
        return None;
    }
    // Quoted: FTS5 reads a quoted string as one phrase, never as syntax.
    Some(
        terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

const COLUMNS: &str = "a.id, a.title, a.symptom, a.cause, a.fix, a.lang, a.ticket_id, a.author_id, u.display_name, u.username, a.created_at, a.updated_at, (SELECT COUNT(*) FROM kb_deflections d WHERE d.article_id = a.id) AS helped, a.revision, a.archived_at, e.display_name AS editor_display, e.username AS editor_username";
/// The article with its author and last editor.
const FROM: &str =
    "kb_articles a JOIN users u ON u.id = a.author_id LEFT JOIN users e ON e.id = a.editor_id";

/// A user's name as the desk shows it: the display name, else the username.
fn name(display: Option<String>, username: Option<String>) -> Option<String> {
    display.filter(|d| !d.is_empty()).or(username)
}

fn from_row(row: &crate::db::Row) -> Result<Article, sqlx::Error> {
    let display: String = row.try_get("display_name")?;
    Ok(Article {
        id: db::uuid(row, "id")?,
        title: row.try_get("title")?,
        symptom: row.try_get("symptom")?,
        cause: row.try_get("cause")?,
        fix: row.try_get("fix")?,
        lang: row.try_get("lang")?,
        ticket_id: db::opt_uuid(row, "ticket_id")?,
        author_id: db::uuid(row, "author_id")?,
        author_name: if display.is_empty() {
            row.try_get("username")?
        } else {
            display
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        helped: row.try_get("helped")?,
        revision: row.try_get("revision")?,
        editor_name: name(
            row.try_get("editor_display")?,
            row.try_get("editor_username")?,
        ),
        archived_at: row.try_get("archived_at")?,
    })
}

/// Articles matching `s` (best first), or the newest without a query.
/// Retired articles appear only when staff ask for them (`archived`).
pub async fn search(pool: &Pool, actor: &User, s: &Search) -> Result<Vec<Article>, DeskError> {
    let archived = s.archived.unwrap_or(false);
    if archived && !on_desk(actor) {
        return Err(DeskError::Forbidden(
            "retired articles are listed for staff and admins".into(),
        ));
    }
    let limit = s.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_RESULTS {
        return Err(DeskError::Invalid(format!(
            "limit must be 1 to {MAX_RESULTS}"
        )));
    }
    let q =
        s.q.as_deref()
            .map(|q| text("q", q, MAX_TEXT, false))
            .transpose()?;
    let lang = s.lang.map(Lang::as_str);
    let rows = match q.as_deref().filter(|q| !q.is_empty()) {
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE ($1 IS NULL OR a.lang = $1) AND (a.archived_at IS NOT NULL) = $3
                 ORDER BY a.created_at DESC LIMIT $2"
            ))
            .bind(lang)
            .bind(i64::from(limit))
            .bind(archived)
            .fetch_all(pool)
            .await?
        }
        Some(q) => {
            let Some(fts) = match_query(q) else {
                return Ok(Vec::new());
            };
            sqlx::query(&match db::backend(pool) {
                db::Backend::Sqlite => format!(
                "SELECT {COLUMNS} FROM kb_fts f JOIN kb_articles a ON a.id = f.article_id
                 JOIN users u ON u.id = a.author_id LEFT JOIN users e ON e.id = a.editor_id
                 WHERE kb_fts MATCH $1 AND ($2 IS NULL OR a.lang = $2)
                   AND (a.archived_at IS NOT NULL) = $4
                 ORDER BY bm25(kb_fts, 0.0, 4.0, 2.0, 1.0, 1.0) LIMIT $3"
                ),
                // The same substrings FTS5's trigram tokenizer matches (the
                // terms of `match_query`'s `"t1" OR "t2"`), ranked by the
                // same column weights (without term frequency).
                db::Backend::Postgres => format!(
                    "WITH terms AS (
                        SELECT '%' || replace(replace(replace(replace(t, '\"\"', '\"'), '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' AS pattern
                        FROM unnest(string_to_array(substr($1, 2, length($1) - 2), '\" OR \"')) AS t
                     )
                     SELECT {COLUMNS} FROM {FROM}
                     CROSS JOIN LATERAL (
                        SELECT sum(4 * (a.title ILIKE m.pattern)::int + 2 * (a.symptom ILIKE m.pattern)::int
                                   + (a.cause ILIKE m.pattern)::int + (a.fix ILIKE m.pattern)::int) AS score
                        FROM terms m
                     ) s
                     WHERE (a.title ILIKE ANY (ARRAY(SELECT pattern FROM terms))
                            OR a.symptom ILIKE ANY (ARRAY(SELECT pattern FROM terms))
                            OR a.cause ILIKE ANY (ARRAY(SELECT pattern FROM terms))
                            OR a.fix ILIKE ANY (ARRAY(SELECT pattern FROM terms)))
                       AND ($2::text IS NULL OR a.lang = $2) AND (a.archived_at IS NOT NULL) = $4
                     ORDER BY s.score DESC, a.created_at DESC LIMIT $3"
                ),
            })
            .bind(fts)
            .bind(lang)
            .bind(i64::from(limit))
            .bind(archived)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// An article as `actor` may read it: a retired one only for staff and admins.
pub async fn read(pool: &Pool, actor: &User, id: Uuid) -> Result<Article, DeskError> {
    let a = get(pool, id).await?;
    if a.archived_at.is_some() && !on_desk(actor) {
        return Err(DeskError::NotFound);
    }
    Ok(a)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Article, DeskError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE a.id = $1");
    db::fetch_row(pool, &sql, &[&id.to_string()], from_row)
        .await?
        .ok_or(DeskError::NotFound)
}

/// Staff and admins write articles.
pub async fn create(pool: &Pool, actor: &User, new: NewArticle) -> Result<Article, DeskError> {
    writers_only(actor, "written")?;
    let text = Text::checked(&new.title, &new.symptom, &new.cause, &new.fix, new.lang)?;
    if let Some(t) = new.ticket_id {
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE id = $1")
            .bind(t.to_string())
            .fetch_one(pool)
            .await?;
        if known == 0 {
            return Err(DeskError::Unacceptable("ticket_id: no such ticket".into()));
        }
    }
    let id = Uuid::new_v4();
    let now = db::now();
    let mut tx = db::begin(pool).await?;
    sqlx::query(
        "INSERT INTO kb_articles (id, title, symptom, cause, fix, lang, ticket_id, author_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(&text.title)
    .bind(&text.symptom)
    .bind(&text.cause)
    .bind(&text.fix)
    .bind(text.lang.as_str())
    .bind(new.ticket_id.map(|t| t.to_string()))
    .bind(actor.id.to_string())
    .bind(&now)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    // SQLite's full-text index is a table of its own; PostgreSQL searches
    // the articles themselves (trigram indexes, see [`search`]).
    if db::backend(pool) == db::Backend::Sqlite {
        sqlx::query(
            "INSERT INTO kb_fts (article_id, title, symptom, cause, fix) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(&text.title)
        .bind(&text.symptom)
        .bind(&text.cause)
        .bind(&text.fix)
        .execute(&mut *tx)
        .await?;
    }
    insert_revision(&mut tx, id, 1, &text, actor, &now).await?;
    tx.commit().await?;
    get(pool, id).await
}

/// An article's text, checked: what each revision keeps.
struct Text {
    title: String,
    symptom: String,
    cause: String,
    fix: String,
    lang: Lang,
}

impl Text {
    fn checked(
        title: &str,
        symptom: &str,
        cause: &str,
        fix: &str,
        lang: Lang,
    ) -> Result<Text, DeskError> {
        Ok(Text {
            title: required("title", title, MAX_TITLE, true)?,
            symptom: required("symptom", symptom, MAX_TEXT, false)?,
            cause: text("cause", cause, MAX_TEXT, false)?,
            fix: required("fix", fix, MAX_TEXT, false)?,
            lang,
        })
    }
}

/// Only the desk (staff and admins) writes the knowledge base.
fn writers_only(actor: &User, done: &str) -> Result<(), DeskError> {
    if on_desk(actor) {
        return Ok(());
    }
    Err(DeskError::Forbidden(format!(
        "knowledge-base articles are {done} by staff and admins"
    )))
}

async fn insert_revision(
    tx: &mut crate::db::Conn,
    id: Uuid,
    number: i64,
    text: &Text,
    editor: &User,
    at: &str,
) -> Result<(), DeskError> {
    sqlx::query(
        "INSERT INTO kb_revisions (article_id, number, title, symptom, cause, fix, lang, editor_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(number)
    .bind(&text.title)
    .bind(&text.symptom)
    .bind(&text.cause)
    .bind(&text.fix)
    .bind(text.lang.as_str())
    .bind(editor.id.to_string())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Staff and admins edit an article: its text becomes a new revision (the
/// earlier ones are kept) and the search index follows, in one transaction.
pub async fn update(
    pool: &Pool,
    actor: &User,
    id: Uuid,
    edit: ArticleEdit,
) -> Result<Article, DeskError> {
    writers_only(actor, "edited")?;
    let text = Text::checked(
        &edit.title,
        &edit.symptom,
        &edit.cause,
        &edit.fix,
        edit.lang,
    )?;
    let now = db::now();
    let mut tx = db::begin(pool).await?;
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT revision, archived_at FROM kb_articles WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    let (current, archived) = row.ok_or(DeskError::NotFound)?;
    if archived.is_some() {
        return Err(DeskError::ArticleRetired);
    }
    if edit.revision.is_some_and(|r| r != current) {
        return Err(DeskError::ArticleChanged);
    }
    let next = current + 1;
    // The revision in the WHERE clause makes a concurrent edit lose cleanly.
    let changed = sqlx::query(
        "UPDATE kb_articles SET title = $1, symptom = $2, cause = $3, fix = $4, lang = $5,
             revision = $6, editor_id = $7, updated_at = $8
         WHERE id = $9 AND revision = $10",
    )
    .bind(&text.title)
    .bind(&text.symptom)
    .bind(&text.cause)
    .bind(&text.fix)
    .bind(text.lang.as_str())
    .bind(next)
    .bind(actor.id.to_string())
    .bind(&now)
    .bind(id.to_string())
    .bind(current)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(DeskError::ArticleChanged);
    }
    insert_revision(&mut tx, id, next, &text, actor, &now).await?;
    if db::backend(pool) == db::Backend::Sqlite {
        sqlx::query(
            "UPDATE kb_fts SET title = $1, symptom = $2, cause = $3, fix = $4 WHERE article_id = $5",
        )
        .bind(&text.title)
        .bind(&text.symptom)
        .bind(&text.cause)
        .bind(&text.fix)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// Staff and admins retire an article: out of search and suggestions, its
/// text and revisions kept. Retiring a retired article changes nothing.
pub async fn retire(pool: &Pool, actor: &User, id: Uuid) -> Result<Article, DeskError> {
    writers_only(actor, "retired")?;
    get(pool, id).await?;
    sqlx::query(
        "UPDATE kb_articles SET archived_at = $1, archived_by = $2 WHERE id = $3 AND archived_at IS NULL",
    )
    .bind(db::now())
    .bind(actor.id.to_string())
    .bind(id.to_string())
    .execute(pool)
    .await?;
    get(pool, id).await
}

/// Every version of an article's text, newest first (staff and admins).
pub async fn revisions(pool: &Pool, actor: &User, id: Uuid) -> Result<Vec<Revision>, DeskError> {
    if !on_desk(actor) {
        return Err(DeskError::Forbidden(
            "an article's history is for staff and admins".into(),
        ));
    }
    get(pool, id).await?;
    let rows = sqlx::query(
        "SELECT r.number, r.title, r.symptom, r.cause, r.fix, r.lang, r.editor_id, r.at,
                u.display_name, u.username
         FROM kb_revisions r JOIN users u ON u.id = r.editor_id
         WHERE r.article_id = $1 ORDER BY r.number DESC",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Revision {
                number: row.try_get("number")?,
                title: row.try_get("title")?,
                symptom: row.try_get("symptom")?,
                cause: row.try_get("cause")?,
                fix: row.try_get("fix")?,
                lang: row.try_get("lang")?,
                editor_id: db::uuid(row, "editor_id")?,
                editor_name: name(row.try_get("display_name")?, row.try_get("username")?)
                    .unwrap_or_default(),
                at: row.try_get("at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Records that an article solved a user's problem (no report needed).
pub async fn helped(
    pool: &Pool,
    user: &User,
    id: Uuid,
    vm_id: Option<Uuid>,
) -> Result<Article, DeskError> {
    if get(pool, id).await?.archived_at.is_some() {
        return Err(DeskError::NotFound);
    }
    sqlx::query(
        "INSERT INTO kb_deflections (article_id, user_id, vm_id, at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(user.id.to_string())
    .bind(vm_id.map(|v| v.to_string()))
    .bind(db::now())
    .execute(pool)
    .await?;
    get(pool, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_and_chinese_trigrams_quoted() {
        assert_eq!(
            match_query("Black screen, no boot!").as_deref(),
            Some("\"black\" OR \"screen\" OR \"boot\"")
        );
        assert_eq!(
            match_query("虚拟机无法启动").as_deref(),
            Some("\"虚拟机\" OR \"拟机无\" OR \"机无法\" OR \"无法启\" OR \"法启动\"")
        );
        // Mixed text splits where the script changes.
        assert_eq!(
            match_query("VM无法启动").as_deref(),
            Some("\"无法启\" OR \"法启动\"")
        );
    }

    #[test]
    fn nothing_searchable_is_none_and_syntax_stays_text() {
        assert_eq!(match_query(""), None);
        assert_eq!(match_query("a b ok 无法"), None);
        let q = match_query("AND OR NOT \"quoted\" col:umn*").unwrap_or_default();
        assert_eq!(q, "\"and\" OR \"not\" OR \"quoted\" OR \"col\" OR \"umn\"");
    }

    #[test]
    fn terms_are_bounded_and_unique() {
        let text = "错".repeat(500);
        assert_eq!(match_query(&text).as_deref(), Some("\"错错错\""));
        let many: String = (0..100).map(|i| format!("word{i} ")).collect();
        let q = match_query(&many).unwrap_or_default();
        assert_eq!(q.matches(" OR ").count(), MAX_TERMS - 1);
    }
}
