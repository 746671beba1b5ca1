//! Webhooks: one HTTP POST per notification, bounded by a timeout.
//!
//! Body formats ([`WebhookFormat`]):
//! - `json` (default): `{"event", "lang", "subject", "text", "markdown",
//!   "ticket": {...}, "details": {...}}` for programs;
//! - `text`: the subject and plain-text body, `text/plain; charset=utf-8`;
//! - `markdown`: the markdown body, `text/markdown; charset=utf-8`;
//! - `chat`: `{"text": markdown}`, what Slack-compatible chat-bot incoming
//!   webhooks accept (Slack, Mattermost, Rocket.Chat).
//!
//! Redirects are not followed (a webhook URL says where to post), any non-2xx
//! answer is an error, and errors name the host only: chat-bot URLs carry
//! their access token in the path or query, so a URL is a secret and never
//! logged (`WebhookTarget`'s `Debug` shows the host).

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Event, Lang, NotifyError, render};

pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Text,
    Markdown,
    Chat,
}

/// Where and how to post.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("host", &host_of(&self.url))
            .field("format", &self.format)
            .finish()
    }
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

impl WebhookTarget {
    /// An `http`/`https` URL with a host, at most [`MAX_URL_LEN`] long.
    pub fn validate(&self) -> Result<reqwest::Url, NotifyError> {
        if self.url.len() > MAX_URL_LEN {
            return Err(NotifyError::BadWebhookUrl);
        }
        let u = reqwest::Url::parse(self.url.trim()).map_err(|_| NotifyError::BadWebhookUrl)?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
            return Err(NotifyError::BadWebhookUrl);
        }
        Ok(u)
    }
}

/// Posts webhooks; cheap to clone (shares the connection pool).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
}

impl WebhookSender {
    /// `timeout` bounds each whole request (connect, send, answer).
    pub fn new(timeout: Duration) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pvce/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| NotifyError::Webhook {
                host: String::new(),
                source,
            })?;
        Ok(Self { client })
    }

    /// The body and its content type for `event` in `lang`.
    pub fn body(format: WebhookFormat, event: &Event, lang: Lang) -> (String, &'static str) {
        let m = render(event, lang);
        match format {
            WebhookFormat::Json => (
                json!({
                    "event": event.kind().as_str(),
                    "lang": lang.tag(),
                    "subject": m.subject,
                    "text": m.text,
                    "markdown": m.markdown,
                    "ticket": event.ticket(),
                    "details": event,
                })
                .to_string(),
                "application/json",
            ),
            WebhookFormat::Text => (
                format!("{}\n\n{}", m.subject, m.text),
                "text/plain; charset=utf-8",
            ),
            WebhookFormat::Markdown => (m.markdown, "text/markdown; charset=utf-8"),
            WebhookFormat::Chat => (
                json!({ "text": m.markdown }).to_string(),
                "application/json",
            ),
        }
    }

    /// Posts `event` rendered in `lang`; `Ok` on any 2xx answer.
    pub async fn send(
        &self,
        target: &WebhookTarget,
        event: &Event,
        lang: Lang,
    ) -> Result<(), NotifyError> {
        let url = target.validate()?;
        let host = url.host_str().unwrap_or_default().to_string();
        let (body, content_type) = Self::body(target.format, event, lang);
        let answer = self
            .client
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(host.clone(), e))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(NotifyError::WebhookStatus {
                host,
                status: status.as_u16(),
            });
        }
        Ok(())
    }
}

fn classify(host: String, e: reqwest::Error) -> NotifyError {
    if e.is_timeout() {
        NotifyError::WebhookTimeout { host }
    } else {
        // Without the URL: it may carry a token.
        NotifyError::Webhook {
            host,
            source: e.without_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_validation() {
        let t = |url: &str| WebhookTarget {
            url: url.into(),
            format: WebhookFormat::Json,
        };
        assert!(
            t("https://chat.lab.example/hooks/abc?token=x")
                .validate()
                .is_ok()
        );
        assert!(t("http://127.0.0.1:8080/hook").validate().is_ok());
        for bad in [
            "ftp://x/y",
            "file:///etc/passwd",
            "not a url",
            "https://",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(t(bad).validate(), Err(NotifyError::BadWebhookUrl)),
                "{bad}"
            );
        }
        let long = format!("https://x.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(t(&long).validate().is_err());
        let dbg = format!(
            "{:?}",
            t("https://chat.lab.example/hooks/SECRET?token=TOKEN")
        );
        assert!(!dbg.contains("SECRET") && !dbg.contains("TOKEN"), "{dbg}");
        assert!(dbg.contains("chat.lab.example"));
    }
}
