//! E-mail over SMTP (lettre, on tokio): plain SMTP, STARTTLS or implicit TLS.
//!
//! [`SmtpSettings`] is the settings form (TOML/JSON). [`Mailer::new`]
//! validates it once — addresses parse, an extra CA certificate loads, and
//! credentials are never sent over an unencrypted connection except to a
//! loopback relay — and [`Mailer::send`] sends one UTF-8 plain-text message
//! (lettre encodes a non-ASCII subject per RFC 2047 and the body as
//! quoted-printable or base64).
//!
//! The password is a [`Secret`]: its `Debug` is `"***"`, and errors name
//! only the host, so neither reaches a log.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{Message, NotifyError};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on the same machine or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS, which is required.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        }
    }
}

/// A string that never shows itself in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The mail server settings (serde: TOML / JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default: 25, 587 or 465 after `security`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The sender, e.g. `pvce 服务台 <desk@lab.example.edu>`.
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// A PEM certificate to trust besides the public roots (a lab-internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Bound on connecting, seconds (default 15); a whole send (greeting,
    /// TLS, AUTH, the message) is bounded by four times this.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

const DEFAULT_TIMEOUT_SECS: u64 = 15;

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sends mail through one SMTP server; cheap to clone (shares the pool).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    /// lettre bounds only the connect on tokio: a server that accepts and
    /// then stops answering would hold a send for ever without this.
    send_timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Validates the settings and prepares the transport (no connection yet).
    pub fn new(s: &SmtpSettings) -> Result<Self, NotifyError> {
        let host = s.host.trim();
        if host.is_empty()
            || host.len() > 253
            || host.contains(|c: char| c.is_whitespace() || c == '/')
        {
            return Err(NotifyError::BadSettings(
                "host must be a host name or address",
            ));
        }
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|_| NotifyError::BadAddress(s.from.clone()))?;
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
            (None, None) => None,
            _ => {
                return Err(NotifyError::BadSettings(
                    "give both username and password, or neither",
                ));
            }
        };
        if credentials.is_some() && s.security == SmtpSecurity::None && !is_loopback(host) {
            return Err(NotifyError::InsecureCredentials {
                host: host.to_string(),
            });
        }
        let tls = match s.security {
            SmtpSecurity::None => Tls::None,
            sec => {
                let mut b = TlsParameters::builder(host.to_string());
                if let Some(path) = &s.ca_file {
                    let pem = std::fs::read(path).map_err(NotifyError::CaFile)?;
                    b = b.add_root_certificate(
                        Certificate::from_pem(&pem).map_err(NotifyError::Tls)?,
                    );
                }
                let params = b.build().map_err(NotifyError::Tls)?;
                if sec == SmtpSecurity::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let timeout =
            Duration::from_secs(s.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).clamp(1, 300));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(s.port.unwrap_or(s.security.default_port()))
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        Ok(Self {
            transport: builder.build(),
            from,
            host: host.to_string(),
            send_timeout: timeout * 4,
        })
    }

    /// Sends `msg` to one recipient (`name <addr>` or `addr`).
    pub async fn send(&self, to: &str, msg: &Message) -> Result<(), NotifyError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| NotifyError::BadAddress(to.to_string()))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(msg.text.clone())?;
        match tokio::time::timeout(self.send_timeout, self.transport.send(email)).await {
            Err(_) => Err(NotifyError::SmtpTimeout {
                host: self.host.clone(),
            }),
            Ok(sent) => sent.map(|_| ()).map_err(|source| NotifyError::Smtp {
                host: self.host.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> SmtpSettings {
        SmtpSettings {
            host: "smtp.lab.example".into(),
            port: None,
            security: SmtpSecurity::Starttls,
            from: "pvce 服务台 <desk@lab.example>".into(),
            username: Some("desk".into()),
            password: Some(Secret::new("hunter2-secret")),
            ca_file: None,
            timeout_secs: None,
        }
    }

    #[tokio::test]
    async fn validation() {
        assert!(Mailer::new(&settings()).is_ok());
        let mut s = settings();
        s.security = SmtpSecurity::None;
        assert!(matches!(
            Mailer::new(&s),
            Err(NotifyError::InsecureCredentials { .. })
        ));
        s.host = "127.0.0.1".into();
        assert!(
            Mailer::new(&s).is_ok(),
            "a loopback relay may take credentials in the clear"
        );
        let mut s = settings();
        s.from = "not an address".into();
        assert!(matches!(Mailer::new(&s), Err(NotifyError::BadAddress(_))));
        let mut s = settings();
        s.password = None;
        assert!(matches!(Mailer::new(&s), Err(NotifyError::BadSettings(_))));
        let mut s = settings();
        s.host = "a b".into();
        assert!(matches!(Mailer::new(&s), Err(NotifyError::BadSettings(_))));
        let mut s = settings();
        s.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(Mailer::new(&s), Err(NotifyError::CaFile(_))));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let s = settings();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
        // ...but the settings round-trip through serde with the password.
        let json = serde_json::to_string(&s).unwrap();
        let back: SmtpSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back.password.unwrap().expose(), "hunter2-secret");
        let toml_form: SmtpSettings = toml::from_str(
            "host = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\nfrom = \"desk@lab.example\"\n",
        )
        .unwrap();
        assert_eq!(toml_form.port, Some(2525));
    }
}
