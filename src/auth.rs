//! Authentication: password hashes, sessions, roles and the login rate limit.
//!
//! Invariants:
//! - Passwords are stored only as argon2id PHC strings.
//! - A session token is 256 random bits, returned once at login; the database
//!   keeps only its SHA-256, so a database leak does not leak live sessions.
//! - Failed logins are limited per (username, client IP): after
//!   [`MAX_FAILURES`] failures in [`FAILURE_WINDOW`] further attempts get 429
//!   until the window passes, whether or not the password is right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{self, Pool};
use crate::users::{self, User};

pub const SESSION_COOKIE: &str = "pvce_session";
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Teacher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "student" => Some(Role::Student),
            "teacher" => Some(Role::Teacher),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("not logged in")]
    Unauthenticated,
    /// Names every role that may do it ("the teacher or admin role"), not
    /// just one of them, so a refused user learns who can help.
    #[error("this action needs the {0}")]
    Forbidden(String),
    #[error("too many failed logins; try again in {0} seconds")]
    RateLimited(u64),
    #[error("password hashing failed")]
    Hash,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Hash)
}

/// Checks a password against a stored PHC string; malformed hashes never verify.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash computed once so logins for unknown users cost as much as real ones
/// (no user enumeration by timing).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("pvce-timing-equaliser").unwrap_or_default())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256-bit URL-safe random token.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tracks failed logins per (username, IP).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<(String, IpAddr), (u32, Instant)>>,
}

impl LoginLimiter {
    /// Err with the seconds left if this (username, ip) is currently locked out.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), AuthError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, since)) = map.get(&(username.to_owned(), ip)) {
            let elapsed = since.elapsed();
            if *count >= MAX_FAILURES && elapsed < FAILURE_WINDOW {
                return Err(AuthError::RateLimited(
                    (FAILURE_WINDOW - elapsed).as_secs().max(1),
                ));
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, username: &str, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound memory under a credential-stuffing run: drop expired entries first.
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = map
            .entry((username.to_owned(), ip))
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, username: &str, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(username.to_owned(), ip));
    }
}

/// Verifies credentials and opens a session; returns the user and the raw token.
pub async fn login(
    pool: &Pool,
    limiter: &LoginLimiter,
    username: &str,
    password: &str,
    ip: IpAddr,
    session_lifetime: Duration,
) -> Result<(User, String), AuthError> {
    limiter.check(username, ip)?;
    let found = users::find_with_hash(pool, username).await?;
    let ok = match &found {
        Some((user, hash)) if !user.disabled => verify_password(password, hash),
        _ => {
            verify_password(password, dummy_hash());
            false
        }
    };
    let Some((user, _)) = found.filter(|_| ok) else {
        limiter.record_failure(username, ip);
        return Err(AuthError::BadCredentials);
    };
    limiter.record_success(username, ip);
    let token = random_token();
    let expires = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(i64::try_from(session_lifetime.as_secs()).unwrap_or(i64::MAX));
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(token_hash(&token))
    .bind(user.id.to_string())
    .bind(db::now())
    .bind(db::format_time(expires))
    .execute(pool)
    .await?;
    Ok((user, token))
}

/// Resolves a session token to its (enabled) user.
pub async fn authenticate(pool: &Pool, token: &str) -> Result<User, AuthError> {
    let user_id: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM sessions WHERE token_hash = ? AND expires_at > ?")
            .bind(token_hash(token))
            .bind(db::now())
            .fetch_optional(pool)
            .await?;
    let user_id = user_id.ok_or(AuthError::Unauthenticated)?;
    let user = users::get_by_id_str(pool, &user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(AuthError::Unauthenticated)?;
    Ok(user)
}

pub async fn logout(pool: &Pool, token: &str) -> Result<(), AuthError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends every session of a user (used when an admin disables the account).
pub async fn revoke_all(pool: &Pool, user_id: &str) -> Result<(), AuthError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Role check used by handlers: passes if the user has one of `allowed`.
pub fn require(user: &User, allowed: &[Role]) -> Result<(), AuthError> {
    if allowed.contains(&user.role) {
        Ok(())
    } else {
        Err(AuthError::Forbidden(role_list(allowed)))
    }
}

/// "admin role", "teacher or admin role", "student, teacher or admin role".
fn role_list(roles: &[Role]) -> String {
    match roles {
        [] => "permission no role has".to_owned(),
        [one] => format!("{} role", one.as_str()),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|r| r.as_str()).collect();
            format!("{} or {} role", init.join(", "), last.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_roundtrip_and_rejects_wrong() {
        let h = hash_password("s3cret!").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret!", &h));
        assert!(!verify_password("s3cret", &h));
        assert!(!verify_password("s3cret!", "not-a-hash"));
    }

    #[test]
    fn limiter_locks_after_max_failures_per_user_and_ip() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            assert!(l.check("alice", ip).is_ok());
            l.record_failure("alice", ip);
        }
        assert!(matches!(
            l.check("alice", ip),
            Err(AuthError::RateLimited(_))
        ));
        assert!(l.check("alice", other).is_ok());
        assert!(l.check("bob", ip).is_ok());
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token();
        assert!(a.len() >= 43);
        assert_ne!(a, random_token());
    }

    #[test]
    fn role_checks() {
        let u = User {
            id: uuid::Uuid::new_v4(),
            username: "s".into(),
            display_name: "s".into(),
            role: Role::Student,
            disabled: false,
        };
        assert!(require(&u, &[Role::Student, Role::Teacher, Role::Admin]).is_ok());
        assert!(matches!(
            require(&u, &[Role::Teacher, Role::Admin]),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn refusals_name_every_allowed_role() {
        let student = User {
            id: uuid::Uuid::new_v4(),
            username: "s".into(),
            display_name: "s".into(),
            role: Role::Student,
            disabled: false,
        };
        let msg = |allowed: &[Role]| {
            require(&student, allowed)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg(&[Role::Teacher, Role::Admin]),
            "this action needs the teacher or admin role"
        );
        assert_eq!(msg(&[Role::Admin]), "this action needs the admin role");
        let teacher = User {
            role: Role::Teacher,
            ..student.clone()
        };
        assert_eq!(
            require(&teacher, &[Role::Student, Role::Admin])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            "this action needs the student or admin role"
        );
        assert_eq!(
            role_list(&[Role::Student, Role::Teacher, Role::Admin]),
            "student, teacher or admin role"
        );
    }
}
