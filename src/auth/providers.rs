//! Campus sign-in settings: the providers and the rules, read from the file
//! `--auth-config` names (TOML).
//!
//! ```toml
//! [[provider]]
//! id = "campus"                 # [a-z0-9-], in URLs: /api/auth/oidc/campus/start
//! kind = "oidc"
//! label = "Campus account"
//! label_zh = "统一身份认证"
//! issuer = "https://idp.example.edu/realms/campus"
//! client_id = "pvce"
//! client_secret_file = "/etc/pvce/oidc-secret"   # first line; never logged
//! scopes = ["profile", "email", "groups"]
//!
//! [rules]
//! default = "student"           # or "refuse"
//! [[rules.rule]]
//! attribute = "groups"
//! value = "lab-admins"
//! then = "admin"                # student | teacher | staff | admin | refuse | disable
//! ```
//!
//! An LDAP directory (search-then-bind, [`super::ldap`]):
//!
//! ```toml
//! [[provider]]
//! id = "ldap"
//! kind = "ldap"
//! label = "Campus directory"
//! label_zh = "校园目录"
//! url = "ldaps://ldap.example.edu"       # or ldap://… with starttls = true
//! starttls = false
//! ca_file = "/etc/pvce/ldap-ca.pem"        # default: the system's roots
//! bind_dn = "cn=pvce,ou=services,dc=example,dc=edu"   # default: anonymous search
//! bind_password_file = "/etc/pvce/ldap-bind"          # first line; never logged
//! base_dn = "ou=people,dc=example,dc=edu"
//! user_filter = "(uid={username})"          # {username} is escaped (RFC 4515)
//! group_base_dn = "ou=groups,dc=example,dc=edu"       # groups → attribute `groups`
//! ```
//!
//! A CAS server (protocol 3.0, or 2.0 without attributes, [`super::cas`]):
//!
//! ```toml
//! [[provider]]
//! id = "cas"
//! kind = "cas"
//! label = "Campus account"
//! label_zh = "统一身份认证"
//! server_url = "https://cas.example.edu/cas"
//! version = 3                              # 2: serviceValidate, no attributes
//! username_attribute = "uid"               # default: the CAS user
//! display_name_attribute = "displayName"
//! ```
//!
//! Invariants:
//! - Secrets are read from their own file (not the settings file, not a
//!   flag) and held as [`Secret`], whose `Debug` is redacted; nothing here
//!   prints one.
//! - Provider ids are unique, short and URL-safe; a bad file stops the server
//!   at start with a message naming the problem, never half-applies.
//! - Only provider kinds this build implements are accepted (`cas`, `oidc`,
//!   `ldap`); any other `kind` is refused at start rather than shown as a
//!   dead button.
//! - An LDAP directory is only spoken to over TLS (LDAPS, or StartTLS on
//!   `ldap://`): a password never crosses the network in clear; its CA file
//!   is read and parsed at start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Invalid(String),
}

/// The whole settings file.
#[derive(Debug, Default)]
pub struct AuthSettings {
    pub providers: Vec<Provider>,
    pub rules: Rules,
}

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub label: String,
    pub label_zh: Option<String>,
    pub kind: ProviderKind,
}

#[derive(Debug)]
pub enum ProviderKind {
    Cas(CasSettings),
    Oidc(OidcSettings),
    Ldap(LdapSettings),
}

/// An LDAP directory's settings: search for the person with the service
/// account (or anonymously), then bind as them with their password.
#[derive(Debug)]
pub struct LdapSettings {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls`.
    pub url: String,
    pub starttls: bool,
    /// The CAs the server's certificate must chain to (PEM, DER inside);
    /// `None`: the system's roots.
    pub ca_certs: Option<Vec<Vec<u8>>>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub base_dn: String,
    /// With `{username}`, replaced by the escaped username.
    pub user_filter: String,
    /// Its value becomes the pvce username at first sign-in.
    pub username_attribute: String,
    pub display_name_attribute: String,
    /// The person's stable id (`entryUUID` in OpenLDAP, `objectGUID` in
    /// AD); the entry's DN when the entry has none.
    pub subject_attribute: String,
    /// Where groups are searched; `None`: no group search (a directory
    /// with `memberOf` carries them on the person).
    pub group_base_dn: Option<String>,
    /// With `{dn}` and `{username}`, both escaped.
    pub group_filter: String,
    /// The groups' names (this attribute of each group) become the
    /// person's attribute `groups`, which rules and course links read.
    pub group_name_attribute: String,
    /// Connecting and each operation.
    pub timeout_secs: u64,
}

/// A CAS server's settings.
#[derive(Debug)]
pub struct CasSettings {
    /// The CAS base URL (`…/login`, `…/p3/serviceValidate` are below it).
    pub server_url: String,
    /// 3: `p3/serviceValidate` with attributes; 2: `serviceValidate`.
    pub version: u8,
    /// The attribute whose value becomes the pvce username at first
    /// sign-in; `None`: the CAS user itself.
    pub username_attribute: Option<String>,
    pub display_name_attribute: String,
    /// Accept a server over plain http (test rigs on loopback only).
    pub allow_http: bool,
}

/// An OpenID Connect relying party's settings.
#[derive(Debug)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim that becomes the pvce username at first sign-in.
    pub username_claim: String,
    /// Accept an issuer over plain http (test rigs on loopback only).
    pub allow_http: bool,
}

/// What `GET /api/auth/providers` shows: nothing secret, nothing internal.
#[derive(Debug, Clone, Serialize)]
pub struct PublicProvider {
    pub id: String,
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_zh: Option<String>,
}

impl Provider {
    pub fn public(&self) -> PublicProvider {
        PublicProvider {
            id: self.id.clone(),
            kind: match self.kind {
                ProviderKind::Cas(_) => "cas",
                ProviderKind::Oidc(_) => "oidc",
                ProviderKind::Ldap(_) => "ldap",
            },
            label: self.label.clone(),
            label_zh: self.label_zh.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "provider")]
    providers: Vec<RawProvider>,
    #[serde(default)]
    rules: Rules,
}

// Unknown fields are refused by the kind (flatten passes them on).
#[derive(Deserialize)]
struct RawProvider {
    id: String,
    label: String,
    label_zh: Option<String>,
    #[serde(flatten)]
    kind: RawKind,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawKind {
    Cas {
        server_url: String,
        #[serde(default = "default_cas_version")]
        version: u8,
        username_attribute: Option<String>,
        #[serde(default = "default_display_name")]
        display_name_attribute: String,
        #[serde(default)]
        allow_http: bool,
    },
    Oidc {
        issuer: String,
        client_id: String,
        client_secret_file: Option<PathBuf>,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default = "default_username_claim")]
        username_claim: String,
        #[serde(default)]
        allow_http: bool,
    },
    Ldap {
        url: String,
        #[serde(default)]
        starttls: bool,
        ca_file: Option<PathBuf>,
        bind_dn: Option<String>,
        bind_password_file: Option<PathBuf>,
        base_dn: String,
        #[serde(default = "default_user_filter")]
        user_filter: String,
        #[serde(default = "default_uid")]
        username_attribute: String,
        #[serde(default = "default_cn")]
        display_name_attribute: String,
        #[serde(default = "default_subject_attribute")]
        subject_attribute: String,
        group_base_dn: Option<String>,
        #[serde(default = "default_group_filter")]
        group_filter: String,
        #[serde(default = "default_cn")]
        group_name_attribute: String,
        #[serde(default = "default_ldap_timeout")]
        timeout_secs: u64,
    },
}

fn default_cas_version() -> u8 {
    3
}
fn default_display_name() -> String {
    "displayName".into()
}
fn default_user_filter() -> String {
    "(uid={username})".into()
}
fn default_uid() -> String {
    "uid".into()
}
fn default_cn() -> String {
    "cn".into()
}
fn default_subject_attribute() -> String {
    "entryUUID".into()
}
fn default_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn})(memberUid={username}))".into()
}
fn default_ldap_timeout() -> u64 {
    5
}

/// The certificates of a PEM file (at least one).
fn read_pem_certs(path: &Path) -> Result<Vec<Vec<u8>>, SettingsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| SettingsError::Read(path.into(), e))?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| SettingsError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SettingsError::Invalid(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn read_secret(path: &Path) -> Result<Secret, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read(path.into(), e))?;
    text.lines().next().unwrap_or("").parse().map_err(|_| {
        SettingsError::Invalid(format!(
            "{}: the first line must be the secret (visible ASCII, no spaces)",
            path.display()
        ))
    })
}

impl AuthSettings {
    /// Reads and checks the settings file.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| SettingsError::Read(path.into(), e))?;
        Self::parse(&text, path)
    }

    /// `path` names the file in messages (secret files are relative to it).
    pub fn parse(text: &str, path: &Path) -> Result<Self, SettingsError> {
        // toml's messages quote the offending line, which may be a secret
        // someone pasted in by mistake: report the position only.
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            SettingsError::Parse(path.into(), format!("{at}{}", e.message()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut providers: Vec<Provider> = Vec::new();
        for raw in file.providers {
            if !valid_id(&raw.id) {
                return Err(SettingsError::Invalid(format!(
                    "provider id {:?}: 1-32 characters of a-z, 0-9 and -",
                    raw.id
                )));
            }
            if providers.iter().any(|p| p.id == raw.id) {
                return Err(SettingsError::Invalid(format!(
                    "provider id {:?} is used twice",
                    raw.id
                )));
            }
            if raw.label.trim().is_empty() {
                return Err(SettingsError::Invalid(format!(
                    "provider {:?} needs a label",
                    raw.id
                )));
            }
            let kind = match raw.kind {
                RawKind::Cas {
                    server_url,
                    version,
                    username_attribute,
                    display_name_attribute,
                    allow_http,
                } => {
                    if !(server_url.starts_with("https://")
                        || (allow_http && server_url.starts_with("http://")))
                    {
                        return Err(invalid(&raw.id, "server_url must be an https:// URL"));
                    }
                    if reqwest::Url::parse(&server_url).is_err() {
                        return Err(invalid(&raw.id, "server_url is not a URL"));
                    }
                    if !(2..=3).contains(&version) {
                        return Err(invalid(&raw.id, "version must be 2 or 3"));
                    }
                    ProviderKind::Cas(CasSettings {
                        server_url,
                        version,
                        username_attribute,
                        display_name_attribute,
                        allow_http,
                    })
                }
                RawKind::Oidc {
                    issuer,
                    client_id,
                    client_secret_file,
                    scopes,
                    username_claim,
                    allow_http,
                } => {
                    if !(issuer.starts_with("https://")
                        || (allow_http && issuer.starts_with("http://")))
                    {
                        return Err(invalid(&raw.id, "the issuer must be an https:// URL"));
                    }
                    let client_secret = client_secret_file
                        .map(|f| read_secret(&base.join(f)))
                        .transpose()?;
                    ProviderKind::Oidc(OidcSettings {
                        issuer,
                        client_id,
                        client_secret,
                        scopes,
                        username_claim,
                        allow_http,
                    })
                }
                RawKind::Ldap {
                    url,
                    starttls,
                    ca_file,
                    bind_dn,
                    bind_password_file,
                    base_dn,
                    user_filter,
                    username_attribute,
                    display_name_attribute,
                    subject_attribute,
                    group_base_dn,
                    group_filter,
                    group_name_attribute,
                    timeout_secs,
                } => {
                    let tls = url.starts_with("ldaps://") && !starttls
                        || url.starts_with("ldap://") && starttls;
                    if !tls {
                        return Err(invalid(
                            &raw.id,
                            "the url must be ldaps://, or ldap:// with starttls = true (passwords never cross the network in clear)",
                        ));
                    }
                    if !user_filter.contains("{username}") {
                        return Err(invalid(&raw.id, "user_filter must contain {username}"));
                    }
                    if bind_dn.is_some() != bind_password_file.is_some() {
                        return Err(invalid(
                            &raw.id,
                            "bind_dn and bind_password_file go together",
                        ));
                    }
                    if !(1..=60).contains(&timeout_secs) {
                        return Err(invalid(&raw.id, "timeout_secs must be 1-60"));
                    }
                    ProviderKind::Ldap(LdapSettings {
                        url,
                        starttls,
                        ca_certs: ca_file.map(|f| read_pem_certs(&base.join(f))).transpose()?,
                        bind_dn,
                        bind_password: bind_password_file
                            .map(|f| read_secret(&base.join(f)))
                            .transpose()?,
                        base_dn,
                        user_filter,
                        username_attribute,
                        display_name_attribute,
                        subject_attribute,
                        group_base_dn,
                        group_filter,
                        group_name_attribute,
                        timeout_secs,
                    })
                }
            };
            providers.push(Provider {
                id: raw.id,
                label: raw.label,
                label_zh: raw.label_zh,
                kind,
            });
        }
        Ok(Self {
            providers,
            rules: file.rules,
        })
    }
}

/// A setting of provider `id` that is wrong, and why.
fn invalid(id: &str, why: &str) -> SettingsError {
    SettingsError::Invalid(format!("provider {id:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rules::Outcome;

    #[test]
    fn a_full_file_parses_and_hides_the_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("secret"), "s3cr3t-value\n").expect("write");
        let path = dir.path().join("auth.toml");
        let s = AuthSettings::parse(
            r#"
            [[provider]]
            id = "campus"
            kind = "oidc"
            label = "Campus account"
            label_zh = "统一身份认证"
            issuer = "https://idp.example.edu"
            client_id = "pvce"
            client_secret_file = "secret"
            scopes = ["profile", "groups"]

            [rules]
            default = "refuse"
            [[rules.rule]]
            attribute = "groups"
            value = "lab-admins"
            then = "admin"
            "#,
            &path,
        )
        .expect("settings");
        assert_eq!(s.providers.len(), 1);
        assert_eq!(s.rules.default, Outcome::Refuse);
        let ProviderKind::Oidc(o) = &s.providers[0].kind else {
            panic!("not oidc: {:?}", s.providers[0].kind);
        };
        assert_eq!(
            o.client_secret.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
        assert!(!format!("{s:?}").contains("s3cr3t"), "Debug leaks: {s:?}");
        let public = serde_json::to_value(s.providers[0].public()).expect("json");
        assert_eq!(
            public,
            serde_json::json!({"id": "campus", "kind": "oidc", "label": "Campus account", "label_zh": "统一身份认证"})
        );
    }

    #[test]
    fn an_ldap_provider_needs_tls_and_hides_its_bind_password() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("bind"), "b1nd-secret\n").expect("write");
        let path = dir.path().join("auth.toml");
        let ldap = |url: &str, starttls: bool, extra: &str| {
            format!(
                "[[provider]]\nid = \"dir\"\nkind = \"ldap\"\nlabel = \"Directory\"\nurl = \"{url}\"\nstarttls = {starttls}\nbase_dn = \"dc=x\"\n{extra}"
            )
        };
        let ok = AuthSettings::parse(
            &ldap(
                "ldaps://ldap.example.edu",
                false,
                "bind_dn = \"cn=pvce,dc=x\"\nbind_password_file = \"bind\"\n",
            ),
            &path,
        )
        .expect("settings");
        let ProviderKind::Ldap(l) = &ok.providers[0].kind else {
            panic!("not ldap");
        };
        assert_eq!(l.user_filter, "(uid={username})");
        assert_eq!(l.subject_attribute, "entryUUID");
        assert_eq!(
            l.bind_password.as_ref().map(Secret::expose),
            Some("b1nd-secret")
        );
        assert!(!format!("{ok:?}").contains("b1nd"), "Debug leaks");
        assert_eq!(ok.providers[0].public().kind, "ldap");
        assert!(AuthSettings::parse(&ldap("ldap://ldap.example.edu", true, ""), &path).is_ok());
        let err = |t: &str| {
            AuthSettings::parse(t, &path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        // Never a password in clear over the network.
        assert!(err(&ldap("ldap://ldap.example.edu", false, "")).contains("starttls"));
        assert!(err(&ldap("ldaps://ldap.example.edu", true, "")).contains("starttls"));
        assert!(
            err(&ldap("ldaps://l", false, "user_filter = \"(uid=x)\"\n")).contains("{username}")
        );
        assert!(err(&ldap("ldaps://l", false, "bind_dn = \"cn=a\"\n")).contains("together"));
        assert!(err(&ldap("ldaps://l", false, "ca_file = \"bind\"\n")).contains("PEM"));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let p = Path::new("/etc/pvce/auth.toml");
        let err = |t: &str| {
            AuthSettings::parse(t, p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let oidc = |id: &str, issuer: &str| {
            format!(
                "[[provider]]\nid = \"{id}\"\nkind = \"oidc\"\nlabel = \"x\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\n"
            )
        };
        assert!(err(&oidc("Campus!", "https://i")).contains("a-z"));
        assert!(
            err(&format!(
                "{}{}",
                oidc("a", "https://i"),
                oidc("a", "https://j")
            ))
            .contains("twice")
        );
        assert!(err(&oidc("a", "http://i")).contains("https"));
        assert!(
            AuthSettings::parse(
                &format!("{}allow_http = true\n", oidc("a", "http://127.0.0.1:1")),
                p
            )
            .is_ok()
        );
        // Kinds this build does not implement are refused, not shown as dead buttons.
        let saml = "[[provider]]\nid = \"c\"\nkind = \"saml\"\nlabel = \"x\"\n";
        assert!(err(saml).contains("saml"), "{}", err(saml));
        let cas = |url: &str, extra: &str| {
            format!(
                "[[provider]]\nid = \"c\"\nkind = \"cas\"\nlabel = \"x\"\nserver_url = \"{url}\"\n{extra}"
            )
        };
        let ok = AuthSettings::parse(&cas("https://cas.example.edu/cas", ""), p).expect("cas");
        let ProviderKind::Cas(c) = &ok.providers[0].kind else {
            panic!("not cas");
        };
        assert_eq!(
            (c.version, c.display_name_attribute.as_str()),
            (3, "displayName")
        );
        assert_eq!(ok.providers[0].public().kind, "cas");
        assert!(err(&cas("http://cas.example.edu", "")).contains("https"));
        assert!(
            AuthSettings::parse(&cas("http://127.0.0.1:1/cas", "allow_http = true\n"), p).is_ok()
        );
        assert!(err(&cas("https://cas.example.edu", "version = 1\n")).contains("version"));
        // A pasted secret in a bad line is not echoed back.
        let e = err("[[provider]]\nid = \"a\"\nclient_secret = \"hunter2-topsecret\"\n");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
