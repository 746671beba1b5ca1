//! Users: students, teachers and admins.
//!
//! Invariants: usernames are unique (database constraint `users_username_key`),
//! 1–64 characters of `[a-z0-9._-]` (they appear in CSV files and UIs), and a
//! password is never stored or returned, only its argon2 hash.
//!
//! An admin's password reset may set `must_change_password`: until the user
//! picks a new password of their own ([`change_own_password`]), the account
//! may only read `/api/me`, change its password and sign out
//! ([`check_password_change`]); the reset password an admin typed (and maybe
//! sent by mail) stops being the key to the account.

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
    /// Set by an admin's reset: the user must choose a new password first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub must_change_password: bool,
}

impl User {
    /// The actor of a change no person made: the campus directory applying
    /// its rules at a sign-in (`provider`: the provider's id). The nil id is
    /// no account's, so the own-account checks never apply to it; the audit
    /// log shows it as `directory:<provider>`.
    pub fn directory(provider: &str) -> Self {
        Self {
            id: Uuid::nil(),
            username: format!("directory:{provider}"),
            display_name: String::new(),
            role: Role::Admin,
            disabled: false,
            must_change_password: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("username {0:?} is already taken")]
    UsernameTaken(String),
    #[error("no such user")]
    NotFound,
    /// An admin may not demote or disable their own account (it would lock
    /// the last admin out as easily as any other).
    #[error("you cannot {0} your own account")]
    OwnAccount(&'static str),
    /// A teacher who still owns courses cannot become a student.
    #[error("this teacher still owns {0} course(s); hand them over first")]
    OwnsCourses(i64),
    /// The current password given with a change of one's own is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The account must change its password before anything else.
    #[error("choose a new password first: an administrator reset yours")]
    PasswordChangeRequired,
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

/// An admin's change to an account; absent fields stay as they are. A field
/// given as `null` is refused (400), not read as "absent": `display_name:
/// null` looks like "clear it", which is not what keeping it would do.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub role: Option<Role>,
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub disabled: Option<bool>,
    /// A new password (an admin resetting a forgotten one).
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub password: Option<String>,
    /// With a reset: the user must choose their own password at the next
    /// sign-in (cleared by [`change_own_password`]).
    #[serde(default, deserialize_with = "crate::patch::present")]
    pub must_change_password: Option<bool>,
}

pub const MAX_PASSWORD_LEN: usize = 1024;

/// [`crate::names::USERNAME`].
pub fn validate_username(name: &str) -> Result<(), UserError> {
    crate::names::USERNAME
        .check(name)
        .map_err(|e| UserError::Invalid(e.to_string()))
}

fn validate_password(password: &str) -> Result<(), UserError> {
    if password.len() < 8 || password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "password must be 8-{MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// [`crate::names::DISPLAY_NAME`] (spaces and any script, no control characters).
fn validate_display_name(d: &str) -> Result<(), UserError> {
    crate::names::DISPLAY_NAME
        .check(d)
        .map_err(|e| UserError::Invalid(e.to_string()))
}

fn validate_new(new: &NewUser) -> Result<(), UserError> {
    validate_username(&new.username)?;
    validate_password(&new.password)?;
    if let Some(d) = &new.display_name {
        validate_display_name(d)?;
    }
    Ok(())
}

async fn hash_off_thread(password: String) -> Result<String, UserError> {
    Ok(
        tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|_| auth::AuthError::Hash)??,
    )
}

fn from_row(row: &crate::db::Row) -> Result<User, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    Ok(User {
        id: db::parse_uuid(&id)?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).unwrap_or(Role::Student),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
    })
}

const COLUMNS: &str = "id, username, display_name, role, disabled, must_change_password";

pub async fn create(pool: &Pool, new: NewUser) -> Result<User, UserError> {
    validate_new(&new)?;
    let hash = hash_off_thread(new.password.clone()).await?;
    let user = User {
        id: Uuid::new_v4(),
        display_name: new
            .display_name
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| new.username.clone()),
        username: new.username,
        role: new.role,
        disabled: false,
        must_change_password: false,
    };
    insert(pool, user, &hash).await
}

/// Writes a new account; a taken username is [`UserError::UsernameTaken`].
async fn insert(pool: &Pool, user: User, password_hash: &str) -> Result<User, UserError> {
    let res = sqlx::query(
        "INSERT INTO users (id, username, display_name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user.id.to_string())
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(user.role.as_str())
    .bind(password_hash)
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

/// Stored as the password hash of accounts made by a campus provider: not
/// a PHC string, so no password ever verifies against it.
pub const NO_PASSWORD: &str = "!external";

/// Creates the account of a campus identity at its first sign-in (no
/// password: it signs in through its provider only).
pub async fn create_external(
    pool: &Pool,
    username: &str,
    display_name: &str,
    role: Role,
) -> Result<User, UserError> {
    validate_username(username)?;
    let display_name = Some(display_name.trim())
        .filter(|d| !d.is_empty() && validate_display_name(d).is_ok())
        .unwrap_or(username);
    let user = User {
        id: Uuid::new_v4(),
        username: username.to_owned(),
        display_name: display_name.to_owned(),
        role,
        disabled: false,
        must_change_password: false,
    };
    insert(pool, user, NO_PASSWORD).await
}

pub async fn list(pool: &Pool) -> Result<Vec<User>, UserError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Largest page of [`search`].
pub const MAX_PAGE: u32 = 500;

/// One page of the users whose username or display name contains `q`
/// (case-insensitive for ASCII; `%`/`_` are literal), by username.
pub async fn search(pool: &Pool, q: &str, limit: u32, offset: u32) -> Result<Vec<User>, UserError> {
    if q.chars().count() > 100 || q.chars().any(char::is_control) {
        return Err(UserError::Invalid(
            "q must be at most 100 characters, no control characters".into(),
        ));
    }
    if limit == 0 || limit > MAX_PAGE {
        return Err(UserError::Invalid(format!("limit must be 1-{MAX_PAGE}")));
    }
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(&format!(
        // lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        "SELECT {COLUMNS} FROM users
         WHERE lower(username) LIKE lower($1) ESCAPE '\\' OR lower(display_name) LIKE lower($1) ESCAPE '\\'
         ORDER BY username LIMIT $2 OFFSET $3"
    ))
    .bind(pattern)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Whether `user` may make this request: one whose password an admin reset
/// with `must_change_password` may only read who they are, change their
/// password and sign out.
pub fn check_password_change(user: &User, method: &str, path: &str) -> Result<(), UserError> {
    let allowed = matches!(
        (method, path),
        ("GET", "/api/me") | ("POST", "/api/me/password") | ("POST", "/api/auth/logout")
    );
    if user.must_change_password && !allowed {
        return Err(UserError::PasswordChangeRequired);
    }
    Ok(())
}

/// A user's change of their own password: the current one must be right,
/// the new one valid and different. Clears `must_change_password`.
pub async fn change_own_password(
    pool: &Pool,
    user: &User,
    current: &str,
    new: &str,
) -> Result<User, UserError> {
    validate_password(new)?;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id.to_string())
        .fetch_optional(pool)
        .await?
        .ok_or(UserError::NotFound)?;
    let given = current.to_owned();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&given, &hash))
        .await
        .map_err(|_| auth::AuthError::Hash)?;
    if !ok {
        return Err(UserError::WrongPassword);
    }
    // Only after the current password proved right: before, the answer
    // would tell a stranger holding the session what the password is.
    if current == new {
        return Err(UserError::Invalid(
            "the new password must differ from the current one".into(),
        ));
    }
    let hash = hash_off_thread(new.to_owned()).await?;
    sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 0 WHERE id = $2")
        .bind(hash)
        .bind(user.id.to_string())
        .execute(pool)
        .await?;
    get(pool, user.id).await
}

pub async fn get_by_id_str(pool: &Pool, id: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
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

/// Applies an admin's change to user `id`. Disabling an account or setting
/// its password ends all of its sessions (a disabled user is also refused at
/// login and on every request). `actor` is the admin making the change.
pub async fn update(
    pool: &Pool,
    actor: &User,
    id: Uuid,
    patch: UserPatch,
) -> Result<User, UserError> {
    if patch.display_name.is_none()
        && patch.role.is_none()
        && patch.disabled.is_none()
        && patch.password.is_none()
        && patch.must_change_password.is_none()
    {
        return Err(UserError::Invalid(
            "nothing to change: give display_name, role, disabled, password or must_change_password"
                .into(),
        ));
    }
    if let Some(d) = &patch.display_name {
        validate_display_name(d)?;
        if d.trim().is_empty() {
            return Err(UserError::Invalid("display_name must not be empty".into()));
        }
    }
    if let Some(p) = &patch.password {
        validate_password(p)?;
    }
    let current = get(pool, id).await?;
    if id == actor.id {
        if patch.disabled == Some(true) {
            return Err(UserError::OwnAccount("disable"));
        }
        if patch.role.is_some_and(|r| r != current.role) {
            return Err(UserError::OwnAccount("change the role of"));
        }
        // It would lock the admin out of everything but the change page.
        if patch.must_change_password == Some(true) {
            return Err(UserError::OwnAccount("force a password change on"));
        }
    }
    let entries = audit_entries(actor, &current, &patch, patch.password.is_some());
    let hash = match patch.password {
        Some(p) => Some(hash_off_thread(p).await?),
        None => None,
    };
    let mut tx = db::begin(pool).await?;
    if patch.role == Some(Role::Student) && current.role != Role::Student {
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM courses WHERE teacher_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if owned > 0 {
            return Err(UserError::OwnsCourses(owned));
        }
    }
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($1, display_name), role = COALESCE($2, role),
         disabled = COALESCE($3, disabled), password_hash = COALESCE($4, password_hash),
         must_change_password = COALESCE($5, must_change_password) WHERE id = $6",
    )
    .bind(patch.display_name.as_deref().map(str::trim))
    .bind(patch.role.map(Role::as_str))
    .bind(patch.disabled.map(i64::from))
    .bind(hash.as_deref())
    .bind(patch.must_change_password.map(i64::from))
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    if patch.disabled == Some(true) || hash.is_some() {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    // Recorded in the change's transaction: no change without its entry.
    for entry in entries {
        crate::audit::record_in(&mut tx, entry).await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// The audit entries of an admin's change to `current` (role, disabling,
/// enabling, a password reset); a change of the display name alone has none.
fn audit_entries(
    actor: &User,
    current: &User,
    patch: &UserPatch,
    password_set: bool,
) -> Vec<crate::audit::Entry> {
    use crate::audit::{Action, Actor, Entry, Target, TargetKind};
    let entry = |action| {
        Entry::new(
            Actor::user(actor.id, &actor.username),
            action,
            Target::new(TargetKind::User, current.id, &current.username),
        )
    };
    let mut out = Vec::new();
    if let Some(role) = patch.role.filter(|r| *r != current.role) {
        out.push(
            entry(Action::UserRoleChanged)
                .detail(serde_json::json!({ "from": current.role.as_str(), "to": role.as_str() })),
        );
    }
    match patch.disabled {
        Some(true) if !current.disabled => out.push(entry(Action::UserDisabled)),
        Some(false) if current.disabled => out.push(entry(Action::UserEnabled)),
        _ => {}
    }
    if password_set || patch.must_change_password == Some(true) {
        out.push(entry(Action::UserPasswordReset).detail(serde_json::json!({
            "password_set": password_set,
            "must_change_password": patch.must_change_password.unwrap_or(current.must_change_password),
        })));
    }
    out
}

/// The user and its password hash, for login only.
pub async fn find_with_hash(
    pool: &Pool,
    username: &str,
) -> Result<Option<(User, String)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE username = $1"
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
        let sql = db::numbered(&format!(
            "SELECT {COLUMNS} FROM users WHERE username IN ({placeholders})"
        ));
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

    fn user(must_change_password: bool) -> User {
        User {
            id: Uuid::new_v4(),
            username: "s".into(),
            display_name: "s".into(),
            role: Role::Student,
            disabled: false,
            must_change_password,
        }
    }

    #[test]
    fn a_reset_account_may_only_change_its_password() {
        let reset = user(true);
        for (m, p) in [
            ("GET", "/api/me"),
            ("POST", "/api/me/password"),
            ("POST", "/api/auth/logout"),
        ] {
            assert!(check_password_change(&reset, m, p).is_ok(), "{m} {p}");
        }
        for (m, p) in [
            ("GET", "/api/vms"),
            ("GET", "/api/me/export"),
            ("POST", "/api/me"),
            ("GET", "/api/me/password"),
        ] {
            assert!(
                matches!(
                    check_password_change(&reset, m, p),
                    Err(UserError::PasswordChangeRequired)
                ),
                "{m} {p}"
            );
            assert!(check_password_change(&user(false), m, p).is_ok());
        }
    }

    #[test]
    fn a_patch_refuses_null_and_keeps_absent_fields() {
        let p: UserPatch = serde_json::from_str(r#"{"role":"teacher"}"#).expect("patch");
        assert!(p.display_name.is_none() && p.role == Some(Role::Teacher));
        for null in [
            "display_name",
            "role",
            "disabled",
            "password",
            "must_change_password",
        ] {
            let body = format!(r#"{{"{null}":null}}"#);
            assert!(serde_json::from_str::<UserPatch>(&body).is_err(), "{body}");
        }
    }
}
