//! A CAS client (protocol 2.0 and 3.0): the `/login?service=` redirect,
//! ticket validation at `serviceValidate` / `p3/serviceValidate`, the
//! attributes of the answer, and single sign-out.
//!
//! No maintained Rust CAS crate exists; the protocol is three HTTP exchanges
//! and two small XML documents, read here with `quick-xml` (which expands no
//! external entities, so a hostile answer cannot read files or reach hosts).
//!
//! Invariants:
//! - The `service` a ticket is validated for is rebuilt by the server from
//!   its own origin, the provider and the flow's `state` — never taken from
//!   the request — so a ticket issued for another service (another site, or
//!   another browser's flow) is refused by the CAS server itself
//!   (`INVALID_SERVICE`).
//! - A ticket is validated once: the CAS server consumes it, and the flow
//!   that carried it is consumed before validation ([`super::sso`]).
//! - A validation answer that is not a well-formed `authenticationSuccess`
//!   with a non-empty user is a refusal; nothing from a failed answer is used.
//! - Single sign-out: the CAS server posts a `LogoutRequest` naming the
//!   ticket (`SessionIndex`) the session was opened with; pvce keeps only a
//!   hash of that ticket beside the session ([`super::bind_session_index`]).
//!   A logout request can only end sessions, never open one.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::providers::CasSettings;
use super::rules::Attributes;
use super::sso::SsoError;

/// A CAS server as one provider.
#[derive(Debug)]
pub struct CasClient {
    settings: CasSettings,
}

/// What a validated ticket says about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasPerson {
    /// The CAS user (the provider's stable id of the person).
    pub user: String,
    pub attributes: Attributes,
}

/// A validation the CAS server did not vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `authenticationFailure` with its code (`INVALID_TICKET`, `INVALID_SERVICE`, …).
    Failure(String),
    /// Not a CAS answer at all.
    Malformed(&'static str),
}

impl CasClient {
    pub fn new(settings: CasSettings) -> Self {
        Self { settings }
    }

    fn server(&self) -> &str {
        self.settings.server_url.trim_end_matches('/')
    }

    /// Where the browser goes to sign in at the CAS server.
    pub fn login_url(&self, service: &str) -> Result<String, SsoError> {
        reqwest::Url::parse_with_params(&format!("{}/login", self.server()), [("service", service)])
            .map(String::from)
            .map_err(|e| SsoError::ProviderUnavailable(format!("bad CAS server URL: {e}")))
    }

    /// Where the browser goes to end its CAS session, coming back to `back`.
    pub fn logout_url(&self, back: &str) -> Option<String> {
        reqwest::Url::parse_with_params(&format!("{}/logout", self.server()), [("service", back)])
            .ok()
            .map(String::from)
    }

    /// Asks the CAS server whether `ticket` was issued for `service`.
    pub async fn validate(
        &self,
        http: &reqwest::Client,
        service: &str,
        ticket: &str,
    ) -> Result<CasPerson, SsoError> {
        let path = if self.settings.version >= 3 {
            "p3/serviceValidate"
        } else {
            "serviceValidate"
        };
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{path}", self.server()),
            [("service", service), ("ticket", ticket)],
        )
        .map_err(|e| SsoError::ProviderUnavailable(format!("bad CAS server URL: {e}")))?;
        let answer = http.get(url).send().await.map_err(|e| {
            tracing::warn!(server = %self.server(), error = %e, "CAS validation request failed");
            SsoError::ProviderUnavailable("the CAS server did not answer".into())
        })?;
        if !answer.status().is_success() {
            tracing::warn!(server = %self.server(), status = %answer.status(), "CAS validation answered with an error status");
            return Err(SsoError::ProviderUnavailable(format!(
                "the CAS server answered {}",
                answer.status().as_u16()
            )));
        }
        // A validation answer is a few KiB; a bigger one is not CAS.
        let body = answer
            .bytes()
            .await
            .map_err(|_| SsoError::ProviderUnavailable("the CAS answer was cut off".into()))?;
        if body.len() > MAX_ANSWER {
            return Err(SsoError::ProviderRefused(
                "the CAS answer is too long".into(),
            ));
        }
        let text = String::from_utf8_lossy(&body);
        parse_validation(&text).map_err(|r| match r {
            Refusal::Failure(code) => SsoError::ProviderRefused(format!("CAS: {code}")),
            Refusal::Malformed(what) => {
                SsoError::ProviderRefused(format!("not a CAS validation answer ({what})"))
            }
        })
    }

    /// The pvce username and display name of a validated person.
    pub fn names(&self, person: &CasPerson) -> (String, Option<String>) {
        let first = |name: &str| super::rules::values(&person.attributes, name).next();
        let username = self
            .settings
            .username_attribute
            .as_deref()
            .and_then(first)
            .unwrap_or(&person.user)
            .to_owned();
        let display = first(&self.settings.display_name_attribute).map(str::to_owned);
        (username, display)
    }
}

const MAX_ANSWER: usize = 256 * 1024;

/// The local name of a (possibly prefixed) XML name: `cas:user` → `user`.
fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// Reads a `serviceResponse` (CAS 2.0 and 3.0, attributes as CAS 3.0 sends
/// them: one element per value under `attributes`).
pub fn parse_validation(xml: &str) -> Result<CasPerson, Refusal> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    // The path of open elements, by local name.
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut user: Option<String> = None;
    let mut failure: Option<String> = None;
    let mut success = false;
    let mut attributes = Attributes::new();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Err(_) => return Err(Refusal::Malformed("not well-formed XML")),
            // A cut-off answer ends with elements still open.
            Ok(Event::Eof) if !path.is_empty() => return Err(Refusal::Malformed("cut off")),
            Ok(Event::Eof) => break,
            Ok(Event::DocType(_)) => return Err(Refusal::Malformed("a DOCTYPE")),
            Ok(Event::Start(e)) => {
                let name = local(e.name().as_ref()).to_vec();
                match (path.len(), name.as_slice()) {
                    (0, b"serviceResponse") => {}
                    (0, _) => return Err(Refusal::Malformed("no serviceResponse")),
                    (1, b"authenticationSuccess") => success = true,
                    (1, b"authenticationFailure") => {
                        let code = e
                            .try_get_attribute("code")
                            .ok()
                            .flatten()
                            .and_then(|a| a.unescape_value().ok())
                            .map(|v| v.chars().take(64).collect::<String>())
                            .unwrap_or_else(|| "UNKNOWN".into());
                        failure = Some(code);
                    }
                    _ => {}
                }
                path.push(name);
                text.clear();
            }
            Ok(Event::Empty(e)) => {
                if path.len() == 1 && local(e.name().as_ref()) == b"authenticationFailure" {
                    failure = Some("UNKNOWN".into());
                }
            }
            Ok(Event::Text(t)) => {
                let piece = t
                    .unescape()
                    .map_err(|_| Refusal::Malformed("a bad entity"))?;
                text.push_str(&piece);
            }
            Ok(Event::CData(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(Event::End(_)) => {
                let Some(name) = path.pop() else {
                    return Err(Refusal::Malformed("unbalanced"));
                };
                let in_success = path.len() >= 2 && path[1] == b"authenticationSuccess";
                if in_success && path.len() == 2 && name == b"user" {
                    user = Some(text.trim().to_owned());
                } else if in_success && path.len() == 3 && path[2] == b"attributes" {
                    let key = String::from_utf8_lossy(&name).into_owned();
                    let values = attributes.entry(key).or_default();
                    if values.len() < 1000 {
                        values.push(text.trim().to_owned());
                    }
                }
                text.clear();
            }
            Ok(_) => {}
        }
    }
    if let Some(code) = failure {
        return Err(Refusal::Failure(code));
    }
    match user.filter(|u| !u.is_empty()) {
        Some(user) if success => Ok(CasPerson { user, attributes }),
        _ => Err(Refusal::Malformed("no user in authenticationSuccess")),
    }
}

/// The ticket a single sign-out `LogoutRequest` names (its `SessionIndex`).
pub fn parse_logout_request(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut inside = false;
    let mut root_seen = false;
    loop {
        match reader.read_event().ok()? {
            Event::Eof => return None,
            Event::DocType(_) => return None,
            Event::Start(e) => {
                let name = local(e.name().as_ref()).to_vec();
                if !root_seen {
                    if name != b"LogoutRequest" {
                        return None;
                    }
                    root_seen = true;
                }
                inside = name == b"SessionIndex";
            }
            Event::Text(t) if inside => {
                let v = t.unescape().ok()?.trim().to_owned();
                return (!v.is_empty() && v.len() <= 256).then_some(v);
            }
            Event::End(_) => inside = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
    <cas:authenticationSuccess>
        <cas:user>20231234</cas:user>
        <cas:attributes>
            <cas:displayName>Li &amp; Lei</cas:displayName>
            <cas:personCategory>02</cas:personCategory>
            <cas:memberOf>cs101</cas:memberOf>
            <cas:memberOf>lab-admins</cas:memberOf>
        </cas:attributes>
    </cas:authenticationSuccess>
</cas:serviceResponse>"#;

    #[test]
    fn a_success_carries_the_user_and_every_attribute_value() {
        let p = parse_validation(SUCCESS).expect("success");
        assert_eq!(p.user, "20231234");
        assert_eq!(p.attributes["displayName"], vec!["Li & Lei"]);
        assert_eq!(p.attributes["personCategory"], vec!["02"]);
        assert_eq!(p.attributes["memberOf"], vec!["cs101", "lab-admins"]);
    }

    #[test]
    fn cas2_answers_have_no_attributes() {
        let p = parse_validation(
            "<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationSuccess><cas:user>bob</cas:user></cas:authenticationSuccess></cas:serviceResponse>",
        )
        .expect("success");
        assert_eq!(p.user, "bob");
        assert!(p.attributes.is_empty());
    }

    #[test]
    fn failures_and_garbage_are_refusals() {
        assert_eq!(
            parse_validation(
                "<cas:serviceResponse xmlns:cas='x'><cas:authenticationFailure code=\"INVALID_SERVICE\">ticket for another service</cas:authenticationFailure></cas:serviceResponse>"
            ),
            Err(Refusal::Failure("INVALID_SERVICE".into()))
        );
        for bad in [
            "",
            "not xml",
            "<html><body>CAS</body></html>",
            "<cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess><cas:user>  </cas:user></cas:authenticationSuccess></cas:serviceResponse>",
            "<cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess></cas:authenticationSuccess></cas:serviceResponse>",
            // A user outside authenticationSuccess vouches for nobody.
            "<cas:serviceResponse xmlns:cas='x'><cas:user>eve</cas:user></cas:serviceResponse>",
            "<cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess><cas:user>eve</cas:user>",
        ] {
            assert!(parse_validation(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn external_entities_are_never_expanded() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess><cas:user>&x;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        assert!(parse_validation(xxe).is_err());
    }

    #[test]
    fn a_logout_request_names_its_ticket() {
        let req = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="x" Version="2.0" IssueInstant="2026-12-04T10:00:00Z"><saml:NameID>@NOT_USED@</saml:NameID><samlp:SessionIndex>ST-1-abc</samlp:SessionIndex></samlp:LogoutRequest>"#;
        assert_eq!(parse_logout_request(req).as_deref(), Some("ST-1-abc"));
        assert_eq!(
            parse_logout_request("<Other><SessionIndex>ST-1</SessionIndex></Other>"),
            None
        );
        assert_eq!(
            parse_logout_request("<samlp:LogoutRequest xmlns:samlp='x'/>"),
            None
        );
        assert_eq!(parse_logout_request("garbage"), None);
    }

    #[test]
    fn urls_escape_the_service() {
        let c = CasClient::new(CasSettings {
            server_url: "https://cas.example.edu/cas/".into(),
            version: 3,
            username_attribute: None,
            display_name_attribute: "displayName".into(),
            allow_http: false,
        });
        let u = c
            .login_url("https://lab.example.edu/api/auth/cas/c/callback?state=a&b")
            .expect("url");
        assert_eq!(
            u,
            "https://cas.example.edu/cas/login?service=https%3A%2F%2Flab.example.edu%2Fapi%2Fauth%2Fcas%2Fc%2Fcallback%3Fstate%3Da%26b"
        );
        let p = parse_validation(SUCCESS).expect("success");
        assert_eq!(c.names(&p), ("20231234".into(), Some("Li & Lei".into())));
    }
}
