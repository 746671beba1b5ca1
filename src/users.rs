//! Users: students, teachers and admins.
//!
//! Invariants: usernames are unique (database constraint `users_username_key`),
//! 1–64 characters of `[a-z0-9._-]` (they appear in CSV files and UIs), and a
//! password is never stored or returned, only its argon2 hash.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::auth::{self, Role};
use crate::db::{self, Pool};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("username {0:?} is already taken")]
    UsernameTaken(String),
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub display_name: Option<String>,
}

pub const MAX_PASSWORD_LEN: usize = 1024;

pub fn validate_username(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(
            "username must be 1-64 characters of a-z, 0-9, '.', '_' or '-'".into(),
        ))
    }
}

fn validate_new(new: &NewUser) -> Result<(), UserError> {
    validate_username(&new.username)?;
    if new.password.len() < 8 || new.password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "password must be 8-{MAX_PASSWORD_LEN} characters"
        )));
    }
    if let Some(d) = &new.display_name
        && (d.chars().count() > 128 || d.chars().any(char::is_control))
    {
        return Err(UserError::Invalid(
            "display_name must be at most 128 printable characters".into(),
        ));
    }
    Ok(())
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    Ok(User {
        id: db::parse_uuid(&id)?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).unwrap_or(Role::Student),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

const COLUMNS: &str = "id, username, display_name, role, disabled";

pub async fn create(pool: &Pool, new: NewUser) -> Result<User, UserError> {
    validate_new(&new)?;
    let hash = {
        let password = new.password.clone();
        tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|_| auth::AuthError::Hash)??
    };
    let user = User {
        id: Uuid::new_v4(),
        display_name: new
            .display_name
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| new.username.clone()),
        username: new.username,
        role: new.role,
        disabled: false,
    };
    let res = sqlx::query(
        "INSERT INTO users (id, username, display_name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(user.id.to_string())
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(user.role.as_str())
    .bind(hash)
    .bind(db::now())
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(user),
        Err(e) if db::unique_violation(&e).is_some() => {
            Err(UserError::UsernameTaken(user.username))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(pool: &Pool) -> Result<Vec<User>, UserError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn get_by_id_str(pool: &Pool, id: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<User, UserError> {
    get_by_id_str(pool, &id.to_string())
        .await?
        .ok_or(UserError::NotFound)
}

/// The user and its password hash, for login only.
pub async fn find_with_hash(
    pool: &Pool,
    username: &str,
) -> Result<Option<(User, String)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE username = ?"
    ))
    .bind(username)
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((from_row(&r)?, r.try_get("password_hash")?)))
        .transpose()
}

/// Looks up many usernames at once: (found users, unknown names).
pub async fn find_by_usernames(
    pool: &Pool,
    names: &[String],
) -> Result<(Vec<User>, Vec<String>), UserError> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for chunk in names.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username IN ({placeholders})");
        let mut q = sqlx::query(&sql);
        for n in chunk {
            q = q.bind(n);
        }
        let rows = q.fetch_all(pool).await?;
        let users: Vec<User> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
        for n in chunk {
            if !users.iter().any(|u| &u.username == n) {
                unknown.push(n.clone());
            }
        }
        found.extend(users);
    }
    Ok((found, unknown))
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub created: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<ImportLineError>,
}

#[derive(Debug, Serialize)]
pub struct ImportLineError {
    pub line: u64,
    pub message: String,
}

/// Imports users from CSV with header `username,display_name,role,password`.
/// Existing usernames are skipped, bad lines reported; good lines are created.
pub async fn import_csv(pool: &Pool, csv_text: &str) -> Result<ImportReport, UserError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| UserError::Invalid(format!("CSV header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(iu), Some(ir), Some(ip)) = (col("username"), col("role"), col("password")) else {
        return Err(UserError::Invalid(
            "CSV header must be username,display_name,role,password".into(),
        ));
    };
    let id = col("display_name");
    let mut report = ImportReport {
        created: vec![],
        skipped: vec![],
        errors: vec![],
    };
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(ImportLineError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let field = |idx: usize| record.get(idx).unwrap_or("").to_owned();
        let Some(role) = Role::parse(&field(ir)) else {
            report.errors.push(ImportLineError {
                line,
                message: "role must be student, teacher or admin".into(),
            });
            continue;
        };
        let new = NewUser {
            username: field(iu),
            password: field(ip),
            role,
            display_name: id.map(field),
        };
        let username = new.username.clone();
        match create(pool, new).await {
            Ok(_) => report.created.push(username),
            Err(UserError::UsernameTaken(_)) => report.skipped.push(username),
            Err(UserError::Invalid(message)) => {
                report.errors.push(ImportLineError { line, message })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        assert!(validate_username("alice.w_2-x").is_ok());
        for bad in ["", "Alice", "a b", "a/b", "../x", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
    }
}
