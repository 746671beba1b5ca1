//! Campus sign-in: the configured providers ([`super::providers`]), the flows
//! in progress, and the one path every campus identity takes into a session.
//!
//! Invariants:
//! - A flow's `state` is single use and expires after [`FLOW_TTL`]; it must
//!   come back both in the callback's query and in the browser's flow cookie
//!   (so nobody can finish a flow started in another browser, and a replayed
//!   callback is refused before the provider is asked anything).
//! - The address a user returns to after sign-in is a path on this server,
//!   checked when the flow starts (no open redirect).
//! - A campus identity is its provider's stable subject, linked to one pvce
//!   account in `external_accounts`; it never takes over a local account of
//!   the same username (409 `account_conflict`, an admin decides).
//! - The rules ([`super::rules`]) are evaluated at every sign-in: the role
//!   follows the directory; `disable` disables the account and ends its
//!   sessions; `refuse` opens nothing. A pvce account an admin disabled stays
//!   disabled whatever the directory says.
//! - Every campus sign-in ends in [`super::open_session`] with the provider id;
//!   every refused one (a foreign return address, a flow this browser did not
//!   start or a replay, a ticket, code or ID token the provider does not
//!   vouch for, the rules) is an audit entry with the provider and reason.
//! - After the rules, a campus sign-in hands the person's attributes to the
//!   [`AfterSignIn`] hook set at start-up (course enrolments from directory
//!   groups, in `courses`, which depends on this module, not the other way);
//!   the hook's failures are logged and never stop the sign-in.
//! - A CAS sign-in uses the same flow record and cookie as OIDC: the
//!   `state` travels inside the `service` URL, so the ticket is only valid
//!   for the browser that started the flow ([`super::cas`]). The session it
//!   opens remembers (a hash of) its ticket, so the CAS server's single
//!   sign-out ends exactly that session.
//! - An LDAP sign-in is a password form: it goes through the same throttle
//!   as the local one ([`super::admit`]), a wrong password is the same 401,
//!   and an unreachable directory is a 503 that says so.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cas::CasClient;
use super::ldap::{Directory, LdapOutcome};
use super::oidc::OidcRp;
use super::providers::{AuthSettings, ProviderKind, PublicProvider};
use super::rules::{self, Attributes, Outcome, Rules};
use crate::db::{self, Pool};
use crate::users::{self, User, UserError, UserPatch};

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Flows in progress at most (each is a few hundred bytes).
const MAX_FLOWS: usize = 20_000;
/// The cookie binding a flow to the browser that started it.
pub const FLOW_COOKIE: &str = "pvce_sso_flow";

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("no sign-in provider {0:?}")]
    UnknownProvider(String),
    #[error("the return address must be a path on this server")]
    BadRedirect,
    #[error(
        "this sign-in was not started in this browser, was used already or has expired; start again"
    )]
    BadState,
    #[error("the sign-in provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("the sign-in provider refused: {0}")]
    ProviderRefused(String),
    #[error("the provider's ID token is not valid: {0}")]
    BadIdToken(String),
    #[error("your campus account has no access to pvce")]
    Refused,
    #[error("this account is disabled")]
    Disabled,
    #[error(
        "the username {0:?} belongs to another pvce account; ask an administrator to link them"
    )]
    AccountConflict(String),
    #[error("too many sign-ins in progress; try again in a minute")]
    Busy,
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Auth(#[from] super::AuthError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl SsoError {
    /// The `reason` of the audit entry of a sign-in that failed so.
    pub fn audit_reason(&self) -> &'static str {
        match self {
            SsoError::Refused => "refused_by_rules",
            SsoError::Disabled => "disabled",
            SsoError::AccountConflict(_) => "account_conflict",
            SsoError::ProviderUnavailable(_) => "provider_unavailable",
            SsoError::ProviderRefused(_) | SsoError::BadIdToken(_) => "provider_refused",
            SsoError::BadState => "bad_state",
            SsoError::BadRedirect => "bad_redirect",
            _ => "error",
        }
    }
}

/// A campus identity as a provider vouched for it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider: String,
    /// The provider's stable id of the person.
    pub subject: String,
    /// The username it asks for at first sign-in.
    pub username: String,
    pub display_name: Option<String>,
    pub attributes: Attributes,
}

/// A finished campus sign-in.
#[derive(Debug)]
pub struct SsoSignedIn {
    pub user: User,
    pub token: String,
    /// Where the browser goes now (a path on this server).
    pub next: String,
}

/// A flow to start: where the browser goes, and the cookie binding it.
#[derive(Debug)]
pub struct Redirect {
    pub url: String,
    pub flow_cookie: String,
}

#[derive(Debug)]
struct Flow {
    provider: String,
    pkce_verifier: String,
    nonce: String,
    next: String,
    started: Instant,
}

#[derive(Debug)]
enum Backend {
    Cas(Box<CasClient>),
    Oidc(Box<OidcRp>),
    Ldap(Box<Directory>),
}

#[derive(Debug)]
struct Configured {
    public: PublicProvider,
    backend: Backend,
}

/// What else a campus sign-in updates once the rules let the person in.
pub trait AfterSignIn: Send + Sync + std::fmt::Debug {
    fn signed_in<'a>(
        &'a self,
        user: &'a User,
        attributes: &'a Attributes,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

#[derive(Debug)]
pub struct Sso {
    after: OnceLock<Arc<dyn AfterSignIn>>,
    pool: Pool,
    providers: Vec<Configured>,
    rules: Rules,
    session_lifetime: Duration,
    http: reqwest::Client,
    flows: Mutex<HashMap<String, Flow>>,
}

/// `next` as given by the login page: a path on this server, nothing that a
/// browser would read as another host (`//evil`, `/\evil`, `https://…`).
pub fn safe_next(next: Option<&str>) -> Result<String, SsoError> {
    let Some(n) = next.filter(|n| !n.is_empty()) else {
        return Ok("/".into());
    };
    let ok = n.len() <= 512
        && n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && !n.chars().any(|c| c.is_control() || c == '\\');
    if ok {
        Ok(n.to_owned())
    } else {
        Err(SsoError::BadRedirect)
    }
}

/// The callback address of a provider for a server reached at `origin`.
pub fn callback_url(origin: &str, provider: &str) -> String {
    format!("{origin}/api/auth/oidc/{provider}/callback")
}

/// The `service` of a CAS flow: the callback with the flow's `state`
/// (URL-safe: [`super::random_token`]), so a ticket is bound to its flow.
pub fn cas_service_url(origin: &str, provider: &str, state: &str) -> String {
    format!("{origin}/api/auth/cas/{provider}/callback?state={state}")
}

impl Sso {
    pub fn new(
        pool: Pool,
        settings: AuthSettings,
        session_lifetime: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let providers = settings
            .providers
            .into_iter()
            .map(|p| {
                Ok(Configured {
                    public: p.public(),
                    backend: match p.kind {
                        ProviderKind::Cas(c) => Backend::Cas(Box::new(CasClient::new(c))),
                        ProviderKind::Oidc(o) => Backend::Oidc(Box::new(OidcRp::new(o))),
                        ProviderKind::Ldap(l) => Backend::Ldap(Box::new(Directory::new(l)?)),
                    },
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            after: OnceLock::new(),
            pool,
            providers,
            rules: settings.rules,
            session_lifetime,
            http,
            flows: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the hook every campus sign-in calls (once, at start-up).
    pub fn set_after_sign_in(&self, hook: Arc<dyn AfterSignIn>) {
        let _ = self.after.set(hook);
    }

    /// The rules every campus sign-in goes through (the directory sync too).
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The providers the login page offers.
    pub fn providers(&self) -> Vec<PublicProvider> {
        self.providers.iter().map(|p| p.public.clone()).collect()
    }

    fn backend(&self, id: &str) -> Option<&Backend> {
        self.providers
            .iter()
            .find(|p| p.public.id == id)
            .map(|p| &p.backend)
    }

    fn oidc(&self, id: &str) -> Result<&OidcRp, SsoError> {
        match self.backend(id) {
            Some(Backend::Oidc(rp)) => Ok(rp),
            _ => Err(SsoError::UnknownProvider(id.to_owned())),
        }
    }

    fn cas(&self, id: &str) -> Result<&CasClient, SsoError> {
        match self.backend(id) {
            Some(Backend::Cas(c)) => Ok(c),
            _ => Err(SsoError::UnknownProvider(id.to_owned())),
        }
    }

    fn ldap(&self, id: &str) -> Result<&Directory, SsoError> {
        match self.backend(id) {
            Some(Backend::Ldap(d)) => Ok(d),
            _ => Err(SsoError::UnknownProvider(id.to_owned())),
        }
    }

    /// The LDAP providers, for the directory sync.
    pub fn directories(&self) -> impl Iterator<Item = (&str, &Directory)> {
        self.providers.iter().filter_map(|p| match &p.backend {
            Backend::Ldap(d) => Some((p.public.id.as_str(), &**d)),
            Backend::Oidc(_) | Backend::Cas(_) => None,
        })
    }

    /// The username/password form of an LDAP provider: throttled like the
    /// local form, search-then-bind at the directory, then the rules.
    pub async fn ldap_login(
        &self,
        sign_in: &super::SignIn,
        provider: &str,
        attempt: super::Attempt<'_>,
    ) -> Result<super::SignedIn, SsoError> {
        let directory = self.ldap(provider)?;
        let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
        let pending = super::admit(sign_in, &attempt, now_unix).await?;
        let person = match directory
            .authenticate(attempt.username, attempt.password)
            .await
        {
            Ok(p) => p,
            Err(LdapOutcome::BadCredentials) => {
                pending.finish(super::throttle::Outcome::Failure);
                crate::audit::sign_in_failed(
                    &self.pool,
                    attempt.username,
                    None,
                    provider,
                    "wrong_password",
                )
                .await;
                return Err(super::AuthError::BadCredentials.into());
            }
            Err(LdapOutcome::Unavailable(what)) => {
                pending.finish(super::throttle::Outcome::NotTried);
                crate::audit::sign_in_failed(
                    &self.pool,
                    attempt.username,
                    None,
                    provider,
                    "provider_unavailable",
                )
                .await;
                return Err(SsoError::ProviderUnavailable(format!(
                    "the directory did not answer ({what}); try again later"
                )));
            }
        };
        pending.finish(super::throttle::Outcome::Success);
        let identity = Identity {
            provider: provider.to_owned(),
            subject: person.subject,
            username: person.username,
            display_name: person.display_name,
            attributes: person.attributes,
        };
        let (user, token) = self
            .audited(provider, attempt.username, self.sign_in(&identity).await)
            .await?;
        let device_cookie = sign_in.device_key.issue(&user.username, now_unix);
        Ok(super::SignedIn {
            user,
            token,
            device_cookie,
        })
    }

    /// Starts a redirect sign-in (OpenID Connect or CAS) for a browser on
    /// this server's `origin`; it returns to `next` afterwards.
    pub async fn start(
        &self,
        protocol: Protocol,
        provider: &str,
        origin: &str,
        next: Option<&str>,
    ) -> Result<Redirect, SsoError> {
        match protocol {
            Protocol::Oidc => self.oidc_start(provider, origin, next).await,
            Protocol::Cas => self.cas_start(provider, origin, next).await,
        }
    }

    /// The end of a redirect sign-in: the browser is back from the provider.
    pub async fn callback(
        &self,
        protocol: Protocol,
        provider: &str,
        origin: &str,
        back: Callback<'_>,
    ) -> Result<SsoSignedIn, SsoError> {
        match protocol {
            Protocol::Oidc => self.oidc_callback(provider, origin, back).await,
            Protocol::Cas => self.cas_callback(provider, origin, back).await,
        }
    }

    /// Starts an OpenID Connect sign-in for a browser on this server's
    /// `origin`; it returns to `next` afterwards.
    pub async fn oidc_start(
        &self,
        provider: &str,
        origin: &str,
        next: Option<&str>,
    ) -> Result<Redirect, SsoError> {
        let next = self.audited(provider, "-", safe_next(next)).await?;
        let rp = self.oidc(provider)?;
        let started = rp
            .start(&self.http, &callback_url(origin, provider))
            .await?;
        self.begin(
            provider,
            next,
            Redirect {
                url: started.url,
                flow_cookie: started.state,
            },
            started.pkce_verifier,
            started.nonce,
        )
    }

    /// `result`, with a failed sign-in recorded in the audit log under the
    /// name the person gave (`-` while the provider has vouched for nobody).
    async fn audited<T>(
        &self,
        provider: &str,
        name: &str,
        result: Result<T, SsoError>,
    ) -> Result<T, SsoError> {
        if let Err(e) = &result {
            crate::audit::sign_in_failed(&self.pool, name, None, provider, e.audit_reason()).await;
        }
        result
    }

    /// Keeps a started flow under its `state` until the browser returns.
    fn keep_flow(&self, state: String, flow: Flow) -> Result<(), SsoError> {
        let now = Instant::now();
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        flows.retain(|_, f| now.duration_since(f.started) < FLOW_TTL);
        if flows.len() >= MAX_FLOWS {
            return Err(SsoError::Busy);
        }
        flows.insert(state, flow);
        Ok(())
    }

    /// Starts a CAS sign-in for a browser on this server's `origin`.
    pub async fn cas_start(
        &self,
        provider: &str,
        origin: &str,
        next: Option<&str>,
    ) -> Result<Redirect, SsoError> {
        let next = self.audited(provider, "-", safe_next(next)).await?;
        let cas = self.cas(provider)?;
        let state = super::random_token();
        let url = cas.login_url(&cas_service_url(origin, provider, &state))?;
        self.begin(
            provider,
            next,
            Redirect {
                url,
                flow_cookie: state,
            },
            String::new(),
            String::new(),
        )
    }

    /// Keeps the flow a redirect starts (bound to its state, which is also
    /// the flow cookie) and hands the redirect back.
    fn begin(
        &self,
        provider: &str,
        next: String,
        redirect: Redirect,
        pkce_verifier: String,
        nonce: String,
    ) -> Result<Redirect, SsoError> {
        self.keep_flow(
            redirect.flow_cookie.clone(),
            Flow {
                provider: provider.to_owned(),
                pkce_verifier,
                nonce,
                next,
                started: Instant::now(),
            },
        )?;
        Ok(redirect)
    }

    /// The CAS server sent the browser back with a ticket: checks the flow,
    /// validates the ticket for this flow's service and signs the person in.
    pub async fn cas_callback(
        &self,
        provider: &str,
        origin: &str,
        back: Callback<'_>,
    ) -> Result<SsoSignedIn, SsoError> {
        let cas = self.cas(provider)?;
        let flow = self.returning_flow(provider, &back).await?;
        let ticket = back
            .code
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| SsoError::ProviderRefused("no ticket in the answer".into()))?;
        let service = cas_service_url(origin, provider, back.state);
        let person = self
            .audited(
                provider,
                "-",
                cas.validate(&self.http, &service, ticket).await,
            )
            .await?;
        let (username, display_name) = cas.names(&person);
        let identity = Identity {
            provider: provider.to_owned(),
            subject: person.user,
            username,
            display_name,
            attributes: person.attributes,
        };
        let signed_in = self.finish(&identity, flow.next).await?;
        super::bind_session_index(&self.pool, &signed_in.token, ticket).await?;
        Ok(signed_in)
    }

    /// The CAS server's single sign-out: ends the session its ticket opened
    /// (nothing when the request names no session of this provider).
    pub async fn cas_single_logout(&self, provider: &str, request: &str) -> Result<(), SsoError> {
        self.cas(provider)?;
        let Some(ticket) = super::cas::parse_logout_request(request) else {
            return Err(SsoError::ProviderRefused(
                "not a CAS LogoutRequest with a SessionIndex".into(),
            ));
        };
        super::end_sessions_by_index(&self.pool, provider, &ticket).await?;
        Ok(())
    }

    /// Takes the flow of `state` (once), if this browser started it and it is fresh.
    fn take_flow(
        &self,
        provider: &str,
        state: &str,
        cookie: Option<&str>,
    ) -> Result<Flow, SsoError> {
        if cookie != Some(state) {
            return Err(SsoError::BadState);
        }
        let flow = self
            .flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .ok_or(SsoError::BadState)?;
        if flow.provider != provider || flow.started.elapsed() >= FLOW_TTL {
            return Err(SsoError::BadState);
        }
        Ok(flow)
    }

    /// The provider sent the browser back: checks the flow, redeems the
    /// code, verifies the ID token and signs the person in.
    pub async fn oidc_callback(
        &self,
        provider: &str,
        origin: &str,
        back: Callback<'_>,
    ) -> Result<SsoSignedIn, SsoError> {
        let rp = self.oidc(provider)?;
        let flow = self.returning_flow(provider, &back).await?;
        if let Some(err) = back.error {
            return Err(SsoError::ProviderRefused(err.chars().take(100).collect()));
        }
        let code = back
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| SsoError::ProviderRefused("no code in the answer".into()))?;
        let claims = rp
            .finish(
                &self.http,
                &callback_url(origin, provider),
                code,
                flow.pkce_verifier,
                flow.nonce,
            )
            .await;
        let claims = self.audited(provider, "-", claims).await?;
        let identity = Identity {
            provider: provider.to_owned(),
            username: claims
                .username
                .clone()
                .unwrap_or_else(|| claims.subject.clone()),
            subject: claims.subject,
            display_name: claims.display_name,
            attributes: claims.attributes,
        };
        self.finish(&identity, flow.next).await
    }

    /// The flow a callback returns to (once): a callback this browser did
    /// not start (login CSRF) or a replay is refused, and audited.
    async fn returning_flow(&self, provider: &str, back: &Callback<'_>) -> Result<Flow, SsoError> {
        let flow = self.take_flow(provider, back.state, back.flow_cookie);
        self.audited(provider, "-", flow).await
    }

    /// Signs a campus identity in at the end of a redirect flow.
    async fn finish(&self, identity: &Identity, next: String) -> Result<SsoSignedIn, SsoError> {
        let (user, token) = self
            .audited(
                &identity.provider,
                &identity.username,
                self.sign_in(identity).await,
            )
            .await?;
        Ok(SsoSignedIn { user, token, next })
    }

    /// Ends the session of `token`; for a session a campus provider opened,
    /// also where to send the browser to end the campus session too
    /// (`None`: nothing more to do; pvce's session is over either way).
    pub async fn logout(
        &self,
        user: &User,
        token: &str,
        origin: &str,
    ) -> Result<Option<String>, SsoError> {
        let provider = super::session_provider(&self.pool, token).await?;
        super::logout(&self.pool, user, token).await?;
        let Some(provider) = provider else {
            return Ok(None);
        };
        if let Ok(cas) = self.cas(&provider) {
            return Ok(cas.logout_url(&format!("{origin}/")));
        }
        let Ok(rp) = self.oidc(&provider) else {
            return Ok(None);
        };
        match rp.logout_url(&self.http, None, &format!("{origin}/")).await {
            Ok(url) => Ok(url),
            Err(e) => {
                tracing::warn!(error = %e, "no provider logout address");
                Ok(None)
            }
        }
    }

    /// The one path of a vouched-for identity into a session: rules, the
    /// linked account (made at first sign-in), then [`super::open_session`].
    pub async fn sign_in(&self, id: &Identity) -> Result<(User, String), SsoError> {
        let decision = rules::decide(&self.rules, &id.attributes);
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM external_accounts WHERE provider = $1 AND subject = $2",
        )
        .bind(&id.provider)
        .bind(&id.subject)
        .fetch_optional(&self.pool)
        .await?;
        let existing = match &linked {
            Some(uid) => users::get_by_id_str(&self.pool, uid).await?,
            None => None,
        };
        let role = match decision.outcome.role() {
            Some(role) => role,
            None => {
                if decision.outcome == Outcome::Disable
                    && let Some(u) = existing.filter(|u| !u.disabled)
                {
                    // Disabling also ends every session of the account.
                    users::update(
                        &self.pool,
                        &User::directory(&id.provider),
                        u.id,
                        UserPatch {
                            disabled: Some(true),
                            ..UserPatch::default()
                        },
                    )
                    .await?;
                    tracing::info!(user = %u.username, provider = %id.provider, "disabled by the directory");
                }
                return Err(match decision.outcome {
                    Outcome::Disable => SsoError::Disabled,
                    _ => SsoError::Refused,
                });
            }
        };
        let user = match existing {
            Some(u) if u.disabled => return Err(SsoError::Disabled),
            Some(u) if u.role != role => {
                match users::update(
                    &self.pool,
                    &User::directory(&id.provider),
                    u.id,
                    UserPatch {
                        role: Some(role),
                        ..UserPatch::default()
                    },
                )
                .await
                {
                    Ok(u) => u,
                    // A teacher who still owns courses keeps the role until
                    // they are handed over (the users module's rule).
                    Err(UserError::OwnsCourses(n)) => {
                        tracing::warn!(user = %u.username, courses = n, "directory demotion deferred: the teacher still owns courses");
                        u
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(u) => u,
            None => {
                let display = id
                    .display_name
                    .clone()
                    .unwrap_or_else(|| id.username.clone());
                let u = match users::create_external(&self.pool, &id.username, &display, role).await
                {
                    Ok(u) => u,
                    Err(UserError::UsernameTaken(name)) => {
                        return Err(SsoError::AccountConflict(name));
                    }
                    Err(e) => return Err(e.into()),
                };
                let now = db::now();
                sqlx::query("INSERT INTO external_accounts (provider, subject, user_id, created_at, last_sign_in_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&id.provider)
                    .bind(&id.subject)
                    .bind(u.id.to_string())
                    .bind(&now)
                    .bind(&now)
                    .execute(&self.pool)
                    .await?;
                u
            }
        };
        sqlx::query(
            "UPDATE external_accounts SET last_sign_in_at = $1 WHERE provider = $2 AND subject = $3",
        )
        .bind(db::now())
        .bind(&id.provider)
        .bind(&id.subject)
        .execute(&self.pool)
        .await?;
        if let Some(hook) = self.after.get() {
            hook.signed_in(&user, &id.attributes).await;
        }
        let token =
            super::open_session(&self.pool, &user, &id.provider, self.session_lifetime).await?;
        Ok((user, token))
    }
}

/// The two redirect protocols of campus sign-in (LDAP has a form instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Oidc,
    Cas,
}

/// What the provider sent the browser back with (for CAS, `code` is the
/// service ticket and `error` is always `None`).
#[derive(Debug, Clone, Copy)]
pub struct Callback<'a> {
    pub state: &'a str,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub flow_cookie: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_return_addresses() {
        assert_eq!(safe_next(None).ok().as_deref(), Some("/"));
        assert_eq!(safe_next(Some("")).ok().as_deref(), Some("/"));
        assert_eq!(
            safe_next(Some("/#/courses")).ok().as_deref(),
            Some("/#/courses")
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(safe_next(Some(bad)), Err(SsoError::BadRedirect)),
                "{bad}"
            );
        }
    }
}
