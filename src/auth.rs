//! Authentication: password hashes, sessions, roles and sign-in protection.
//!
//! Invariants:
//! - Passwords are stored only as argon2id PHC strings; checking one runs on
//!   the blocking pool behind a bounded queue ([`hashing`]), never on the
//!   async runtime's threads, and a full queue answers [`AuthError::Busy`].
//! - A session token is 256 random bits, returned once at login; the database
//!   keeps only its SHA-256, so a database leak does not leak live sessions.
//! - Sign-ins are throttled, never locked ([`throttle`]): failed attempts per
//!   source address are budgeted, and per (username, source) — or per
//!   (username, device) for a browser holding a device cookie ([`device`]) —
//!   attempts after the first few are spaced out progressively; the right
//!   password always gets in once its turn comes.
//! - Unknown usernames cost a full password check (no enumeration by timing).
//! - Every sign-in, local or through a campus provider ([`sso`]), opens its
//!   session through [`open_session`] with the provider's id.

pub mod cas;
pub mod device;
pub mod hashing;
pub mod ldap;
pub mod oidc;
pub mod providers;
pub mod rules;
pub mod sso;
pub mod throttle;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{self, Pool};
use crate::users::{self, User};

/// The session cookie over plain http.
pub const SESSION_COOKIE: &str = "pvce_session";
/// The session cookie over https (`Secure`, `Path=/`, no `Domain`: the
/// browser refuses a cookie of this name set any other way, e.g. by a
/// sibling subdomain or over plain http).
pub const SECURE_SESSION_COOKIE: &str = "__Host-pvce_session";
/// The device cookie ([`device`]) over plain http and over https.
pub const DEVICE_COOKIE: &str = "pvce_device";
pub const SECURE_DEVICE_COOKIE: &str = "__Host-pvce_device";

/// Sign-ins that may wait for a password check (`--login-hash-queue`).
pub const DEFAULT_HASH_QUEUE: usize = 256;
/// Failed sign-ins per source before 429 (`--login-ip-burst`): a spray of
/// 60 usernames is stopped, a campus NAT's typos at the start of a class are not.
pub const DEFAULT_IP_BURST: u32 = 40;
/// Failed sign-ins per source per minute after the burst (`--login-ip-per-minute`).
pub const DEFAULT_IP_PER_MINUTE: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Teacher,
    Admin,
    /// Lab technicians who work the service desk ([`crate::desk`]): tickets,
    /// nodes (read), the VMs named in open tickets, the knowledge base; no
    /// user management.
    Staff,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Admin => "admin",
            Role::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "student" => Some(Role::Student),
            "teacher" => Some(Role::Teacher),
            "admin" => Some(Role::Admin),
            "staff" => Some(Role::Staff),
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
    #[error("too many failed sign-ins; try again in {0} seconds")]
    RateLimited(u64),
    #[error("the server is busy signing in others; try again in {0} seconds")]
    Busy(u64),
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

/// Whole seconds for a `Retry-After`, at least 1.
fn retry_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Everything sign-in needs besides the database: the throttle, the
/// password-check pool and the device-cookie key.
#[derive(Debug)]
pub struct SignIn {
    throttle: throttle::Throttle,
    hashes: hashing::HashPool,
    device_key: device::DeviceKey,
}

impl SignIn {
    pub fn new(
        limits: throttle::Limits,
        hashes: hashing::HashPool,
        device_key: device::DeviceKey,
    ) -> Self {
        Self {
            throttle: throttle::Throttle::new(limits),
            hashes,
            device_key,
        }
    }
}

impl From<hashing::HashError> for AuthError {
    fn from(e: hashing::HashError) -> Self {
        match e {
            hashing::HashError::Busy { retry_after } => AuthError::Busy(retry_secs(retry_after)),
            hashing::HashError::Failed => AuthError::Hash,
        }
    }
}

/// One sign-in attempt as it reached the server.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address (behind a trusted proxy: the one it reported).
    pub source: IpAddr,
    /// The device cookie the browser sent, if any.
    pub device_cookie: Option<&'a str>,
}

/// A successful sign-in: the session token and a fresh device cookie.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub token: String,
    pub device_cookie: String,
}

/// Settles a throttle ticket however the attempt ends: a caller that goes
/// away mid-attempt (client disconnect) is counted as a failure.
struct Pending<'a> {
    throttle: &'a throttle::Throttle,
    ticket: Option<throttle::Ticket>,
}

impl Pending<'_> {
    fn finish(mut self, outcome: throttle::Outcome) {
        if let Some(t) = self.ticket.take() {
            self.throttle.finish(t, outcome, Instant::now());
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.throttle
                .finish(t, throttle::Outcome::Failure, Instant::now());
        }
    }
}

/// Admits a password attempt through the throttle, waiting out its delay;
/// the caller settles the ticket with the attempt's outcome. Every password
/// form (local, LDAP in [`sso`]) goes through here.
async fn admit<'a>(
    sign_in: &'a SignIn,
    attempt: &Attempt<'_>,
    now_unix: i64,
) -> Result<Pending<'a>, AuthError> {
    let username = attempt.username;
    let subject = match attempt
        .device_cookie
        .and_then(|c| sign_in.device_key.verify(c, username, now_unix))
    {
        Some(device) => throttle::Subject::Device {
            username: username.to_owned(),
            device,
        },
        None => throttle::Subject::Source {
            username: username.to_owned(),
            source: throttle::Source::of(attempt.source),
        },
    };
    let admission = sign_in
        .throttle
        .admit(
            subject,
            throttle::Source::of(attempt.source),
            Instant::now(),
        )
        .map_err(|r| AuthError::RateLimited(retry_secs(r.retry_after)))?;
    let pending = Pending {
        throttle: &sign_in.throttle,
        ticket: Some(admission.ticket),
    };
    if !admission.wait.is_zero() {
        tokio::time::sleep(admission.wait).await;
    }
    Ok(pending)
}

/// Verifies credentials and opens a session. Waits out the throttle's delay
/// first; 429 when it would be too long or the source's budget is spent,
/// 503 when too many password checks are already waiting.
pub async fn login(
    pool: &Pool,
    sign_in: &SignIn,
    attempt: Attempt<'_>,
    session_lifetime: Duration,
) -> Result<SignedIn, AuthError> {
    let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
    let username = attempt.username;
    let pending = admit(sign_in, &attempt, now_unix).await?;
    let found = match users::find_with_hash(pool, username).await {
        Ok(f) => f,
        Err(e) => {
            pending.finish(throttle::Outcome::NotTried);
            return Err(e.into());
        }
    };
    let stored = match &found {
        Some((user, hash)) if !user.disabled => Some(hash.clone()),
        _ => None,
    };
    let password = attempt.password.to_owned();
    let ok = sign_in
        .hashes
        .run(move || match stored {
            // An account of a campus provider has no usable hash: it costs
            // a full check too, so timing does not tell it exists.
            Some(hash) if PasswordHash::new(&hash).is_ok() => verify_password(&password, &hash),
            _ => {
                verify_password(&password, dummy_hash());
                false
            }
        })
        .await;
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            pending.finish(throttle::Outcome::NotTried);
            return Err(e.into());
        }
    };
    let Some((user, _)) = found.as_ref().filter(|_| ok).cloned() else {
        pending.finish(throttle::Outcome::Failure);
        let (account, reason) = match &found {
            Some((u, _)) if u.disabled => (Some(u.id), "disabled"),
            Some((u, _)) => (Some(u.id), "wrong_password"),
            None => (None, "unknown_user"),
        };
        crate::audit::sign_in_failed(pool, username, account, "local", reason).await;
        return Err(AuthError::BadCredentials);
    };
    pending.finish(throttle::Outcome::Success);
    let token = open_session(pool, &user, LOCAL_PROVIDER, session_lifetime).await?;
    let device_cookie = sign_in.device_key.issue(&user.username, now_unix);
    Ok(SignedIn {
        user,
        token,
        device_cookie,
    })
}

/// The provider name of the local password form.
pub const LOCAL_PROVIDER: &str = "local";

/// Opens a session for a user whose identity is proven: every way of
/// signing in (the password form, each campus provider in [`sso`]) ends
/// here, with the provider's id, so there is one place that sees them all.
pub async fn open_session(
    pool: &Pool,
    user: &User,
    provider: &str,
    lifetime: Duration,
) -> Result<String, AuthError> {
    let token = random_token();
    let expires = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, provider) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&token))
    .bind(user.id.to_string())
    .bind(db::now())
    .bind(db::format_time(expires))
    .bind(provider)
    .execute(pool)
    .await?;
    // Every sign-in, local or campus, opens its session here: one record.
    crate::audit::signed_in(pool, user.id, &user.username, provider).await;
    Ok(token)
}

/// Resolves a session token to its (enabled) user.
pub async fn authenticate(pool: &Pool, token: &str) -> Result<User, AuthError> {
    let user_id: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > $2",
    )
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

/// The provider that opened the session of `token` (`None`: unknown token,
/// or a session from before providers were recorded).
pub async fn session_provider(pool: &Pool, token: &str) -> Result<Option<String>, AuthError> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT provider FROM sessions WHERE token_hash = $1",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?
    .flatten())
}

pub async fn logout(pool: &Pool, user: &User, token: &str) -> Result<(), AuthError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    let me = crate::audit::Actor::user(user.id, &user.username);
    let target = crate::audit::Target::new(crate::audit::TargetKind::User, user.id, &user.username);
    crate::audit::record(
        pool,
        crate::audit::Entry::new(me, crate::audit::Action::SignOut, target),
    )
    .await;
    Ok(())
}

/// Remembers which single-sign-out index (a CAS ticket) opened the session
/// of `token`; only its hash is kept, like the token's.
pub async fn bind_session_index(pool: &Pool, token: &str, index: &str) -> Result<(), AuthError> {
    sqlx::query("UPDATE sessions SET sso_session_index = $1 WHERE token_hash = $2")
        .bind(token_hash(index))
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// The provider's single sign-out: ends the sessions `provider` opened with
/// `index`, each recorded as a sign-out.
pub async fn end_sessions_by_index(
    pool: &Pool,
    provider: &str,
    index: &str,
) -> Result<(), AuthError> {
    let ended: Vec<(String, String)> = sqlx::query_as(
        "DELETE FROM sessions WHERE provider = $1 AND sso_session_index = $2 \
         RETURNING user_id, (SELECT username FROM users WHERE users.id = sessions.user_id)",
    )
    .bind(provider)
    .bind(token_hash(index))
    .fetch_all(pool)
    .await?;
    for (user_id, username) in ended {
        let Ok(id) = user_id.parse() else { continue };
        let who = crate::audit::Actor::user(id, &username);
        let target = crate::audit::Target::new(crate::audit::TargetKind::User, id, &username);
        let mut entry = crate::audit::Entry::new(who, crate::audit::Action::SignOut, target);
        entry = entry.detail(serde_json::json!({ "provider": provider, "single_sign_out": true }));
        crate::audit::record(pool, entry).await;
    }
    Ok(())
}

/// Ends every session of a user (used when an admin disables the account).
pub async fn revoke_all(pool: &Pool, user_id: &str) -> Result<(), AuthError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
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
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token();
        assert!(a.len() >= 43);
        assert_ne!(a, random_token());
    }

    fn user(role: Role) -> User {
        User {
            id: uuid::Uuid::new_v4(),
            username: "s".into(),
            display_name: "s".into(),
            role,
            disabled: false,
            must_change_password: false,
        }
    }

    #[test]
    fn role_checks() {
        let u = user(Role::Student);
        assert!(require(&u, &[Role::Student, Role::Teacher, Role::Admin]).is_ok());
        assert!(matches!(
            require(&u, &[Role::Teacher, Role::Admin]),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn refusals_name_every_allowed_role() {
        let student = user(Role::Student);
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
        let teacher = user(Role::Teacher);
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
