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
//! Invariants:
//! - Secrets are read from their own file (not the settings file, not a
//!   flag) and held as [`Secret`], whose `Debug` is redacted; nothing here
//!   prints one.
//! - Provider ids are unique, short and URL-safe; a bad file stops the server
//!   at start with a message naming the problem, never half-applies.
//! - Only provider kinds this build implements are accepted (`oidc`); any
//!   other `kind` is refused at start rather than shown as a dead button.

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
    Oidc(OidcSettings),
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
                ProviderKind::Oidc(_) => "oidc",
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
                        return Err(SettingsError::Invalid(format!(
                            "provider {:?}: the issuer must be an https:// URL",
                            raw.id
                        )));
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
        let ProviderKind::Oidc(o) = &s.providers[0].kind;
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
        let cas = "[[provider]]\nid = \"c\"\nkind = \"cas\"\nlabel = \"x\"\n";
        assert!(err(cas).contains("cas"), "{}", err(cas));
        // A pasted secret in a bad line is not echoed back.
        let e = err("[[provider]]\nid = \"a\"\nclient_secret = \"hunter2-topsecret\"\n");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
