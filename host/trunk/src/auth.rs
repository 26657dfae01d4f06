//! Answering a provider's challenge (RFC 3261 §22.2) for any request Sluice sends to a trunk:
//! the header to add to the retried request, with the nonce counted per nonce.

use sluice_auth::challenge::ChallengeError;
use sluice_auth::client::cnonce;
use sluice_auth::{Algorithm, Challenge, Credentials};
use sluice_sip::{HeaderName, Message};
use std::fmt;

/// Why a challenge was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The trunk has no credentials.
    NoCredentials,
    /// A 401/407 without a challenge Sluice can answer.
    Unanswerable(String),
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::NoCredentials => {
                f.write_str("challenged, but the trunk has no credentials")
            }
            AuthFailure::Unanswerable(why) => write!(f, "challenge not answerable: {why}"),
        }
    }
}

/// A trunk's credentials and the nonces it has answered.
#[derive(Debug, Clone)]
pub struct Authenticator {
    credentials: Option<Credentials>,
    /// The last challenge answered and how many times its nonce was used.
    last: Option<(Challenge, HeaderName, u32)>,
}

/// Whether a challenge (401/407) that follows an answer may be answered again: only when the
/// provider says the nonce was stale (RFC 7616 §3.3), or it is a different challenge than the one
/// just answered (a nonce the provider renewed). The same nonce refused again means wrong
/// credentials.
pub fn worth_answering(previous: Option<&Challenge>, new: &Challenge) -> bool {
    match previous {
        None => true,
        Some(p) => new.stale || p.nonce != new.nonce,
    }
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>) -> Authenticator {
        Authenticator {
            credentials,
            last: None,
        }
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The challenge of a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) response: the
    /// strongest one offered that Sluice can answer (SHA-256 before MD5, RFC 8760), and the
    /// header that answers it.
    pub fn challenge_of(resp: &Message) -> Result<(Challenge, HeaderName), AuthFailure> {
        let (asks, answers) = match resp.status() {
            Some(407) => (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            ),
            _ => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        };
        let mut best: Option<Challenge> = None;
        let mut why = ChallengeError::Incomplete;
        // Whole lines: a challenge holds commas of its own.
        for v in resp.headers.get_all(&asks) {
            match Challenge::parse(v) {
                Ok(c) => {
                    let stronger = |c: &Challenge| {
                        matches!(c.algorithm, Algorithm::Sha256 | Algorithm::Sha256Sess)
                    };
                    if best.as_ref().is_none_or(|b| stronger(&c) && !stronger(b)) {
                        best = Some(c);
                    }
                }
                Err(e) => why = e,
            }
        }
        best.map(|c| (c, answers))
            .ok_or_else(|| AuthFailure::Unanswerable(why.to_string()))
    }

    /// The header (name and value) that answers `resp`'s challenge for a request `method` to
    /// `uri`.
    pub fn answer(
        &mut self,
        resp: &Message,
        method: &str,
        uri: &str,
    ) -> Result<(HeaderName, String), AuthFailure> {
        let creds = self
            .credentials
            .as_ref()
            .ok_or(AuthFailure::NoCredentials)?;
        let (challenge, header) = Authenticator::challenge_of(resp)?;
        let nc = match &self.last {
            Some((c, _, n)) if c.nonce == challenge.nonce => n.saturating_add(1),
            _ => 1,
        };
        let value = creds
            .authorize(&challenge, method, uri, nc, &cnonce())
            .to_header();
        self.last = Some((challenge, header.clone(), nc));
        Ok((header, value))
    }

    /// The header for a new request under the last challenge answered (the next nonce count),
    /// so that a refresh need not be challenged again.
    pub fn preemptive(&mut self, method: &str, uri: &str) -> Option<(HeaderName, String)> {
        let creds = self.credentials.as_ref()?;
        let (challenge, header, nc) = self.last.as_mut()?;
        *nc = nc.saturating_add(1);
        let value = creds
            .authorize(challenge, method, uri, *nc, &cnonce())
            .to_header();
        Some((header.clone(), value))
    }

    /// The challenge answered last.
    pub fn last_challenge(&self) -> Option<&Challenge> {
        self.last.as_ref().map(|(c, _, _)| c)
    }

    /// Forget the last challenge (a refused answer).
    pub fn forget(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_auth::Authorization;

    fn challenged(status: u16, values: &[&str]) -> Message {
        let mut m = Message::response(status, "Unauthorized");
        let name = if status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        for v in values {
            m.headers.push(name.clone(), *v);
        }
        m
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some(Credentials {
            username: "acct".into(),
            password: "pw".into(),
        }))
    }

    #[test]
    fn answers_the_strongest_challenge_with_the_right_header() {
        let mut a = auth();
        let resp = challenged(
            407,
            &[
                r#"Digest realm="p", nonce="n1", algorithm=MD5, qop="auth""#,
                r#"Digest realm="p", nonce="n2", algorithm=SHA-256, qop="auth""#,
            ],
        );
        let (h, v) = a.answer(&resp, "INVITE", "sip:1@p").unwrap();
        assert_eq!(h, HeaderName::ProxyAuthorization);
        let parsed = Authorization::parse(&v).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Sha256);
        assert_eq!(parsed.nonce, "n2");
        assert_eq!(parsed.qop.as_ref().unwrap().0, 1);
        // The same nonce used again counts up.
        let (_, v) = a.preemptive("REGISTER", "sip:p").unwrap();
        assert_eq!(Authorization::parse(&v).unwrap().qop.unwrap().0, 2);
    }

    #[test]
    fn what_cannot_be_answered() {
        let resp = challenged(401, &[r#"Digest realm="p", nonce="n""#]);
        assert_eq!(
            Authenticator::new(None).answer(&resp, "INVITE", "sip:x"),
            Err(AuthFailure::NoCredentials)
        );
        let resp = challenged(401, &[r#"Basic realm="p""#]);
        assert!(matches!(
            auth().answer(&resp, "INVITE", "sip:x"),
            Err(AuthFailure::Unanswerable(_))
        ));
        let resp = challenged(401, &[]);
        assert!(auth().answer(&resp, "INVITE", "sip:x").is_err());
    }

    #[test]
    fn a_second_challenge_is_answered_only_when_stale_or_renewed() {
        let c1 = Challenge::parse(r#"Digest realm="p", nonce="n1""#).unwrap();
        let same = c1.clone();
        let mut stale = c1.clone();
        stale.stale = true;
        let mut renewed = c1.clone();
        renewed.nonce = "n2".into();
        assert!(worth_answering(None, &c1));
        assert!(!worth_answering(Some(&c1), &same), "wrong credentials");
        assert!(worth_answering(Some(&c1), &stale));
        assert!(worth_answering(Some(&c1), &renewed));
    }
}
