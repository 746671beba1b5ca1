//! LDAP directory client (the `ldap3` crate): search-then-bind sign-in, and
//! looking a person up by username for the directory sync.
//!
//! Invariants:
//! - Every connection is TLS (LDAPS, or StartTLS before anything else is
//!   sent — the settings refuse anything else); the server's certificate is
//!   checked against the configured CA or the system's roots, never skipped.
//! - A username reaches a search filter only escaped ([`filter`], RFC 4515),
//!   and only after [`plausible_username`] accepted it; a DN reaches one the
//!   same way. A filter template is filled in one pass, so a value that
//!   looks like a placeholder stays a value.
//! - An empty password is refused before the directory is asked: an LDAP
//!   simple bind with a DN and no password is an *unauthenticated* bind that
//!   servers answer with success.
//! - "No such person", "several people" and "wrong password" are one answer
//!   ([`LdapOutcome::BadCredentials`]); only an unreachable or misbehaving
//!   directory is [`LdapOutcome::Unavailable`].
//! - Passwords (the person's, the service account's) are never logged; LDAP
//!   errors are logged by their message, which carries none.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::providers::LdapSettings;
use super::rules::Attributes;

/// The LDAP result code of a wrong password (RFC 4511 `invalidCredentials`).
const INVALID_CREDENTIALS: u32 = 49;

/// What the directory says of a person.
#[derive(Debug, Clone)]
pub struct Person {
    pub dn: String,
    pub subject: String,
    pub username: String,
    pub display_name: Option<String>,
    /// The entry's attributes and, from the group search, `groups`.
    pub attributes: Attributes,
}

/// Why a sign-in or a look-up did not give a person.
#[derive(Debug, thiserror::Error)]
pub enum LdapOutcome {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug)]
pub struct Directory {
    settings: LdapSettings,
    tls: Arc<rustls::ClientConfig>,
}

/// A username worth asking the directory about: 1–64 characters, no
/// control characters. (Escaping is what makes the filter safe; this only
/// spares the directory junk.)
pub fn plausible_username(u: &str) -> bool {
    !u.is_empty() && u.chars().count() <= 64 && !u.chars().any(char::is_control)
}

/// Fills `template`'s `{name}` placeholders with the values, escaped for a
/// search filter, in one pass (a value is never searched for placeholders).
/// Unknown placeholders stay as they are.
pub fn filter(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (close, *v))
        }) {
            Some((close, value)) => {
                out.push_str(&ldap3::ldap_escape(value));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn unavailable(what: &str, e: &ldap3::LdapError) -> LdapOutcome {
    // The error's message names the operation and the server's answer,
    // never a password.
    tracing::warn!(error = %e, "LDAP {what} failed");
    LdapOutcome::Unavailable(format!("{what} failed"))
}

impl Directory {
    pub fn new(settings: LdapSettings) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_certs {
            Some(certs) => {
                for c in certs {
                    roots.add(rustls::pki_types::CertificateDer::from(c.clone()))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    // A system root this TLS stack cannot use is skipped, as
                    // every client does.
                    let _ = roots.add(c);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            settings,
            tls: Arc::new(tls),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs)
    }

    /// A connection, TLS set up, bound as the service account (or anonymous).
    async fn connect(&self) -> Result<ldap3::Ldap, LdapOutcome> {
        let conn_settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.settings.starttls)
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &self.settings.url)
            .await
            .map_err(|e| unavailable("connecting", &e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.timeout());
        if let (Some(dn), Some(pw)) = (&self.settings.bind_dn, &self.settings.bind_password) {
            ldap.simple_bind(dn, pw.expose())
                .await
                .and_then(|r| r.success())
                .map_err(|e| unavailable("the service account's bind", &e))?;
        }
        Ok(ldap)
    }

    /// The person of `username` (exactly one entry), with their groups.
    async fn find(
        &self,
        ldap: &mut ldap3::Ldap,
        username: &str,
    ) -> Result<Option<Person>, LdapOutcome> {
        let s = &self.settings;
        let user_filter = filter(&s.user_filter, &[("username", username)]);
        ldap.with_timeout(self.timeout());
        let (entries, _) = ldap
            .search(
                &s.base_dn,
                Scope::Subtree,
                &user_filter,
                vec!["*", s.subject_attribute.as_str()],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| unavailable("the search for the person", &e))?;
        // None or several: not a person to sign in (several would let the
        // directory's order decide who someone is).
        let Ok([entry]) = <[ldap3::ResultEntry; 1]>::try_from(entries) else {
            return Ok(None);
        };
        let entry = SearchEntry::construct(entry);
        let mut attributes: Attributes = entry.attrs.into_iter().collect();
        let first = |attrs: &Attributes, name: &str| {
            super::rules::values(attrs, name).next().map(str::to_owned)
        };
        let Some(name) = first(&attributes, &s.username_attribute) else {
            tracing::warn!(dn = %entry.dn, attribute = %s.username_attribute, "LDAP entry without a username");
            return Ok(None);
        };
        let subject = first(&attributes, &s.subject_attribute).unwrap_or_else(|| entry.dn.clone());
        let display_name = first(&attributes, &s.display_name_attribute);
        if let Some(base) = &s.group_base_dn {
            let group_filter = filter(
                &s.group_filter,
                &[("dn", entry.dn.as_str()), ("username", name.as_str())],
            );
            ldap.with_timeout(self.timeout());
            let (groups, _) = ldap
                .search(
                    base,
                    Scope::Subtree,
                    &group_filter,
                    vec![s.group_name_attribute.as_str()],
                )
                .await
                .and_then(|r| r.success())
                .map_err(|e| unavailable("the search for the person's groups", &e))?;
            let names: Vec<String> = groups
                .into_iter()
                .filter_map(|g| {
                    let g = SearchEntry::construct(g);
                    let attrs: Attributes = g.attrs.into_iter().collect();
                    first(&attrs, &s.group_name_attribute)
                })
                .collect();
            attributes.entry("groups".into()).or_default().extend(names);
        }
        Ok(Some(Person {
            dn: entry.dn,
            subject,
            username: name,
            display_name,
            attributes,
        }))
    }

    /// Search-then-bind: finds the person, then binds as them with `password`.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Person, LdapOutcome> {
        if !plausible_username(username) || password.is_empty() {
            return Err(LdapOutcome::BadCredentials);
        }
        let mut ldap = self.connect().await?;
        let found = self.find(&mut ldap, username).await;
        let person = match found {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = ldap.unbind().await;
                return Err(LdapOutcome::BadCredentials);
            }
            Err(e) => return Err(e),
        };
        ldap.with_timeout(self.timeout());
        let bound = ldap.simple_bind(&person.dn, password).await;
        let _ = ldap.unbind().await;
        match bound {
            Ok(r) if r.rc == 0 => Ok(person),
            Ok(r) if r.rc == INVALID_CREDENTIALS => Err(LdapOutcome::BadCredentials),
            Ok(r) => {
                tracing::warn!(rc = r.rc, text = %r.text, "LDAP bind as the person refused");
                Err(LdapOutcome::BadCredentials)
            }
            Err(e) => Err(unavailable("the bind as the person", &e)),
        }
    }

    /// What the directory says of `username` now (`None`: no such person),
    /// for the directory sync.
    pub async fn lookup(&self, username: &str) -> Result<Option<Person>, LdapOutcome> {
        if !plausible_username(username) {
            return Ok(None);
        }
        let mut ldap = self.connect().await?;
        let found = self.find(&mut ldap, username).await;
        let _ = ldap.unbind().await;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_cannot_change_the_filter() {
        let f = |u: &str| {
            filter(
                "(&(objectClass=person)(uid={username}))",
                &[("username", u)],
            )
        };
        assert_eq!(f("alice"), "(&(objectClass=person)(uid=alice))");
        // The classic injections: a wildcard, closing the filter and adding a
        // clause, a NUL; each becomes a literal value.
        assert_eq!(f("*"), "(&(objectClass=person)(uid=\\2a))");
        assert_eq!(
            f("x)(|(uid=*"),
            "(&(objectClass=person)(uid=x\\29\\28|\\28uid=\\2a))"
        );
        assert_eq!(f("a\\b\0"), "(&(objectClass=person)(uid=a\\5cb\\00))");
        // A value that looks like a placeholder stays a value.
        assert_eq!(
            filter(
                "(|(member={dn})(memberUid={username}))",
                &[("dn", "{username}"), ("username", "u")]
            ),
            "(|(member={username})(memberUid=u))"
        );
        // Unknown placeholders and lone braces are left alone.
        assert_eq!(filter("({x}{", &[("username", "u")]), "({x}{");
    }

    #[test]
    fn only_plausible_usernames_reach_the_directory() {
        assert!(plausible_username("alice"));
        assert!(plausible_username("张三"));
        assert!(!plausible_username(""));
        assert!(!plausible_username("a\nb"));
        assert!(!plausible_username(&"a".repeat(65)));
    }

    proptest::proptest! {
        /// Whatever the username, the filled filter has exactly the
        /// template's parentheses and no wildcard: the value cannot add
        /// clauses or widen the match.
        #[test]
        fn escaped_values_add_no_filter_syntax(u in "\\PC{0,40}") {
            let out = filter("(uid={username})", &[("username", &u)]);
            proptest::prop_assert_eq!(out.matches('(').count(), 1);
            proptest::prop_assert_eq!(out.matches(')').count(), 1);
            proptest::prop_assert!(!out.contains('*'));
            proptest::prop_assert!(out.starts_with("(uid=") && out.ends_with(')'));
        }
    }
}
