//! Notifications sent outside pvce: e-mail over SMTP ([`mail`]) and
//! webhooks ([`webhook`]), for the service desk's events.
//!
//! A notification is an [`Event`] (what happened to which ticket) rendered
//! into a [`Message`] in the recipient's [`Lang`] by [`render`], then handed
//! to a channel. [`Notifier`] owns both senders and delivers one event to one
//! [`Destination`]. Choosing *who* gets *which* event (user preferences,
//! in-app notifications) is the desk's business, not this module's.
//!
//! Invariants:
//! - user-written text (titles, comments) is data: a subject never carries a
//!   line break (no header injection), markdown escapes it;
//! - secrets (SMTP password, webhook URLs — chat-bot URLs carry their token)
//!   never reach a log or a `Debug` output; errors name the host only;
//! - every send is bounded by a timeout, and failures are typed
//!   ([`NotifyError`]) so the caller can retry or record them.

pub mod mail;
pub mod message;
pub mod webhook;

use serde::{Deserialize, Serialize};

pub use mail::{Mailer, SmtpSecurity, SmtpSettings};
pub use message::{
    AlertChange, AlertRef, CourseRef, Event, EventKind, Lang, Message, TicketRef, render,
};
pub use webhook::{WebhookFormat, WebhookSender, WebhookTarget};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("not a valid e-mail address: {0:?}")]
    BadAddress(String),
    #[error("SMTP settings: {0}")]
    BadSettings(&'static str),
    #[error("refusing to send SMTP credentials unencrypted to {host}: use starttls or tls")]
    InsecureCredentials { host: String },
    #[error("reading the SMTP CA certificate: {0}")]
    CaFile(#[source] std::io::Error),
    #[error("SMTP TLS setup: {0}")]
    Tls(#[source] lettre::transport::smtp::Error),
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("sending mail via {host}: {source}")]
    Smtp {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("mail server {host} stopped answering")]
    SmtpTimeout { host: String },
    #[error("webhook URL must be an http:// or https:// URL with a host (at most {max} characters)", max = webhook::MAX_URL_LEN)]
    BadWebhookUrl,
    #[error("webhook to {host} timed out")]
    WebhookTimeout { host: String },
    #[error("webhook to {host} answered HTTP {status}")]
    WebhookStatus { host: String, status: u16 },
    #[error("webhook to {host}: {source}")]
    Webhook {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("no mail server is configured")]
    MailDisabled,
}

/// Where one notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Destination {
    Email { address: String, lang: Lang },
    Webhook { target: WebhookTarget, lang: Lang },
}

/// Both senders: the mailer (absent when no SMTP server is configured) and
/// the webhook client.
#[derive(Debug, Clone)]
pub struct Notifier {
    mailer: Option<Mailer>,
    webhooks: WebhookSender,
}

impl Notifier {
    pub fn new(mailer: Option<Mailer>, webhooks: WebhookSender) -> Self {
        Self { mailer, webhooks }
    }

    /// Renders `event` in the destination's language and sends it.
    pub async fn deliver(&self, to: &Destination, event: &Event) -> Result<(), NotifyError> {
        match to {
            Destination::Email { address, lang } => {
                let mailer = self.mailer.as_ref().ok_or(NotifyError::MailDisabled)?;
                mailer.send(address, &render(event, *lang)).await
            }
            Destination::Webhook { target, lang } => self.webhooks.send(target, event, *lang).await,
        }
    }
}
