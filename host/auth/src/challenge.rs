//! A digest challenge (`WWW-Authenticate` from a registrar or UAS, `Proxy-Authenticate` from a
//! proxy), as read from a response and as written by Sluice's own registrar.

use crate::params::{self, quote};
use std::fmt;

/// The digest algorithms of RFC 7616 that SIP uses (SHA-512-256 is left out: no SIP peer asks
/// for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MD5" => Algorithm::Md5,
            "MD5-SESS" => Algorithm::Md5Sess,
            "SHA-256" => Algorithm::Sha256,
            "SHA-256-SESS" => Algorithm::Sha256Sess,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// A digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The challenge offers `qop=auth` (Sluice answers with it; `auth-int` alone is not
    /// supported).
    pub qop_auth: bool,
    /// The previous answer was right but its nonce had expired (RFC 7616 §3.3).
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeError {
    NotDigest,
    Malformed,
    /// Missing realm or nonce.
    Incomplete,
    UnsupportedAlgorithm(String),
    /// Only `qop=auth-int` offered.
    UnsupportedQop(String),
}

impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChallengeError::NotDigest => f.write_str("not a Digest challenge"),
            ChallengeError::Malformed => f.write_str("malformed challenge parameters"),
            ChallengeError::Incomplete => f.write_str("challenge without realm or nonce"),
            ChallengeError::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm {a}"),
            ChallengeError::UnsupportedQop(q) => write!(f, "unsupported qop {q}"),
        }
    }
}

impl std::error::Error for ChallengeError {}

impl Challenge {
    /// Read a header value: `Digest realm="…", nonce="…", …`.
    pub fn parse(value: &str) -> Result<Challenge, ChallengeError> {
        let v = value.trim_start();
        let (scheme, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(ChallengeError::NotDigest);
        }
        let p = params::parse(rest).ok_or(ChallengeError::Malformed)?;
        let (Some(realm), Some(nonce)) = (params::get(&p, "realm"), params::get(&p, "nonce"))
        else {
            return Err(ChallengeError::Incomplete);
        };
        let algorithm = match params::get(&p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => {
                Algorithm::parse(a).ok_or_else(|| ChallengeError::UnsupportedAlgorithm(a.into()))?
            }
        };
        let qop_auth = match params::get(&p, "qop") {
            None => false,
            Some(q) => {
                let auth = q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth"));
                if !auth {
                    return Err(ChallengeError::UnsupportedQop(q.into()));
                }
                true
            }
        };
        Ok(Challenge {
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: params::get(&p, "opaque").map(str::to_string),
            algorithm,
            qop_auth,
            stale: params::get(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        let mut s = format!(
            "Digest realm={}, nonce={}, algorithm={}",
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.as_str()
        );
        if self.qop_auth {
            s.push_str(", qop=\"auth\"");
        }
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            s.push_str(&quote(o));
        }
        if self.stale {
            s.push_str(", stale=true");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_providers_send() {
        let c = Challenge::parse(
            r#"Digest realm="sip.example.net",nonce="5f2b9e", opaque="xyz", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE"#,
        )
        .unwrap();
        assert_eq!(c.realm, "sip.example.net");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth && c.stale);
        assert_eq!(c.opaque.as_deref(), Some("xyz"));
        let c = Challenge::parse(r#"digest realm="r", nonce="n""#).unwrap();
        assert_eq!(
            (c.algorithm, c.qop_auth, c.stale),
            (Algorithm::Md5, false, false)
        );
        assert_eq!(Challenge::parse(&c.to_header()).unwrap(), c);
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#),
            Err(ChallengeError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(r#"Digest nonce="n""#),
            Err(ChallengeError::Incomplete)
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Err(ChallengeError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(ChallengeError::UnsupportedQop(_))
        ));
        assert_eq!(
            Challenge::parse(r#"Digest realm="r, nonce="n""#),
            Err(ChallengeError::Malformed)
        );
    }
}
