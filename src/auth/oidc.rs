//! OpenID Connect relying party (the `openidconnect` crate): authorization
//! code flow with PKCE, discovery, RP-initiated logout.
//!
//! Invariants:
//! - The provider's metadata and keys come from its discovery document
//!   (fetched at first use, retried after a failure, refetched on a key
//!   rotation as below); the ID token's signature, issuer, audience, expiry
//!   and `nonce` are checked by the crate before any claim is read.
//! - An ID token signed by a key the cached key set lacks (the provider
//!   rotated its keys) makes pvce refetch the discovery document and keys
//!   once and verify the same token again; such refetches happen at most once
//!   per [`REFETCH_EVERY`], so forged tokens cannot make pvce hammer the IdP.
//! - Every flow carries a fresh PKCE verifier and nonce; the caller keeps
//!   them with the `state` and hands them back once ([`super::sso`]).
//! - The HTTP client follows no redirects (the crate's advice against SSRF
//!   through a provider's answers).

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::{ClaimsVerificationError, SignatureVerificationError};

use super::providers::OidcSettings;
use super::rules::Attributes;
use super::sso::SsoError;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The least time between two refetches of the provider's keys caused by an
/// ID token signed with a key pvce does not know.
pub const REFETCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct OidcRp {
    settings: OidcSettings,
    /// Replaceable: a key rotation at the provider swaps in fresh metadata.
    metadata: tokio::sync::RwLock<Option<Arc<ProviderMetadataWithLogout>>>,
    /// When an unknown key last caused a refetch (the rate limit's clock).
    last_refetch: Mutex<Option<Instant>>,
}

/// A started flow: where to send the browser and what to keep for its return.
#[derive(Debug)]
pub struct Started {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

/// What a verified ID token says about the person.
#[derive(Debug)]
pub struct Claims {
    pub subject: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub attributes: Attributes,
    /// The raw token, for `id_token_hint` at logout.
    pub id_token: String,
}

impl OidcRp {
    pub fn new(settings: OidcSettings) -> Self {
        Self {
            settings,
            metadata: tokio::sync::RwLock::new(None),
            last_refetch: Mutex::new(None),
        }
    }

    async fn metadata(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<ProviderMetadataWithLogout>, SsoError> {
        if let Some(meta) = self.metadata.read().await.as_ref() {
            return Ok(meta.clone());
        }
        let mut slot = self.metadata.write().await;
        // Another flow may have fetched it while this one waited for the lock.
        if let Some(meta) = slot.as_ref() {
            return Ok(meta.clone());
        }
        let meta = Arc::new(self.discover(http).await?);
        *slot = Some(meta.clone());
        Ok(meta)
    }

    async fn discover(
        &self,
        http: &reqwest::Client,
    ) -> Result<ProviderMetadataWithLogout, SsoError> {
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| SsoError::ProviderUnavailable(format!("bad issuer URL: {e}")))?;
        ProviderMetadataWithLogout::discover_async(issuer, http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "OIDC discovery failed");
                SsoError::ProviderUnavailable("its discovery document could not be read".into())
            })
    }

    /// Fresh metadata and keys after an ID token named a key pvce lacks, or
    /// `None` when the rate limit says not yet (or the refetch failed: the
    /// cached metadata stays).
    async fn refetch(&self, http: &reqwest::Client) -> Option<Arc<ProviderMetadataWithLogout>> {
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if !may_refetch(*last, now, REFETCH_EVERY) {
                return None;
            }
            *last = Some(now);
        }
        tracing::info!(issuer = %self.settings.issuer, "ID token signed by an unknown key: refetching the provider's keys");
        let meta = Arc::new(self.discover(http).await.ok()?);
        *self.metadata.write().await = Some(meta.clone());
        Some(meta)
    }

    fn client_of(
        &self,
        meta: &ProviderMetadataWithLogout,
        redirect: &str,
    ) -> Result<Client, SsoError> {
        let meta = meta.clone();
        let redirect = RedirectUrl::new(redirect.to_owned()).map_err(|_| SsoError::BadRedirect)?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    async fn client(&self, http: &reqwest::Client, redirect: &str) -> Result<Client, SsoError> {
        let meta = self.metadata(http).await?;
        self.client_of(&meta, redirect)
    }

    /// A new flow towards the provider's authorization endpoint.
    pub async fn start(&self, http: &reqwest::Client, redirect: &str) -> Result<Started, SsoError> {
        let client = self.client(http, redirect).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.settings.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Redeems the code (with the flow's PKCE verifier) and verifies the ID
    /// token against the flow's nonce.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        redirect: &str,
        code: &str,
        pkce_verifier: String,
        nonce: String,
    ) -> Result<Claims, SsoError> {
        let client = self.client(http, redirect).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| SsoError::ProviderUnavailable("it has no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(http)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "OIDC code exchange refused");
                SsoError::ProviderRefused("the sign-in code was refused (used already, expired or not issued for this sign-in)".into())
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::BadIdToken("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // Perhaps the provider rotated its keys since they were
                // cached: the same token again with fresh ones (the code is
                // redeemed already and cannot be used twice).
                let Some(meta) = self.refetch(http).await else {
                    return Err(SsoError::BadIdToken(
                        "the ID token is signed by a key the provider does not publish".into(),
                    ));
                };
                let fresh = self.client_of(&meta, redirect)?;
                id_token.claims(&fresh.id_token_verifier(), &nonce)
            }
            other => other,
        }
        .map_err(|e| SsoError::BadIdToken(e.to_string()))?;
        let raw = id_token.to_string();
        // Verified above: its payload is the provider's word, custom claims
        // (groups, affiliations) included, which the typed claims leave out.
        let attributes = payload_attributes(&raw);
        let username = super::rules::values(&attributes, &self.settings.username_claim)
            .next()
            .map(str::to_owned);
        Ok(Claims {
            subject: claims.subject().to_string(),
            username,
            display_name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            attributes,
            id_token: raw,
        })
    }

    /// Where to send the browser to end the provider's session too (`None`
    /// when the provider has no end-session endpoint).
    pub async fn logout_url(
        &self,
        http: &reqwest::Client,
        id_token_hint: Option<&str>,
        after: &str,
    ) -> Result<Option<String>, SsoError> {
        let meta = self.metadata(http).await?;
        let Some(end) = meta.additional_metadata().end_session_endpoint.clone() else {
            return Ok(None);
        };
        let mut req = openidconnect::LogoutRequest::from(end)
            .set_client_id(ClientId::new(self.settings.client_id.clone()));
        if let Ok(after) = PostLogoutRedirectUrl::new(after.to_owned()) {
            req = req.set_post_logout_redirect_uri(after);
        }
        if let Some(hint) =
            id_token_hint.and_then(|t| t.parse::<openidconnect::core::CoreIdToken>().ok())
        {
            req = req.set_id_token_hint(&hint);
        }
        Ok(Some(req.http_get_url().to_string()))
    }
}

/// Whether an unknown signing key may cause a refetch now: never before, or
/// at least `every` since the last one.
fn may_refetch(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

/// The claims of a (verified) JWT's payload as multi-valued attributes:
/// strings, numbers and booleans, and arrays of them.
fn payload_attributes(jwt: &str) -> Attributes {
    use base64::Engine;
    let mut out = Attributes::new();
    let Some(payload) = jwt.split('.').nth(1) else {
        return out;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return out;
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return out;
    };
    fn scalar(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    for (k, v) in map {
        let values: Vec<String> = match &v {
            serde_json::Value::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if !values.is_empty() {
            out.insert(k, values);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_refetch_at_most_once_a_minute() {
        let t0 = Instant::now();
        assert!(may_refetch(None, t0, REFETCH_EVERY));
        assert!(!may_refetch(Some(t0), t0, REFETCH_EVERY));
        assert!(!may_refetch(
            Some(t0),
            t0 + Duration::from_secs(59),
            REFETCH_EVERY
        ));
        assert!(may_refetch(Some(t0), t0 + REFETCH_EVERY, REFETCH_EVERY));
        // A clock that seems to go backwards does not open the gate.
        assert!(!may_refetch(Some(t0 + REFETCH_EVERY), t0, REFETCH_EVERY));
    }

    #[test]
    fn payload_claims_become_attributes() {
        use base64::Engine;
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            enc(serde_json::json!({"alg": "RS256"})),
            enc(
                serde_json::json!({"sub": "u1", "groups": ["a", "b", {"x": 1}], "age": 3, "ok": true, "o": {"n": 1}})
            )
        );
        let a = payload_attributes(&jwt);
        assert_eq!(a["sub"], vec!["u1"]);
        assert_eq!(a["groups"], vec!["a", "b"]);
        assert_eq!(a["age"], vec!["3"]);
        assert_eq!(a["ok"], vec!["true"]);
        assert!(!a.contains_key("o"));
        assert!(payload_attributes("garbage").is_empty());
    }
}
