//! Sluice as the authenticating side (a gateway or provider registering to Sluice): nonces it
//! issues and the check of the answers.
//!
//! A nonce is `<issued, hex seconds>.<HMAC-SHA256 of issued and realm, truncated>`: Sluice keeps
//! no state per challenge, a forged or foreign nonce fails the MAC, and an old one is recognised
//! as stale (right password, new nonce needed: `stale=true`, RFC 7616 §3.3). Replays are refused
//! by the nonce count: each answer must count higher than the last one seen for its nonce (and a
//! nonce answered without `qop` serves once).

use crate::challenge::{Algorithm, Challenge};
use crate::client::Authorization;
use hmac::{Hmac, Mac};
use std::collections::{HashMap, VecDeque};

type HmacSha256 = Hmac<sha2::Sha256>;

/// Nonces whose counts are remembered (the oldest are forgotten first; a forgotten nonce is
/// soon stale anyway).
const REMEMBERED: usize = 65_536;

/// What an answer to a challenge is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The password was right but the nonce expired or was used already: challenge again with
    /// `stale=true`.
    Stale,
    /// Wrong password or user, unknown realm or nonce: challenge again, count the failure.
    Wrong,
}

/// The request an answer is checked against, and the secret it must prove.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub method: &'a str,
    pub realm: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

pub struct NonceIssuer {
    secret: [u8; 32],
    /// How long a nonce is good for, in seconds.
    lifetime: u64,
    algorithm: Algorithm,
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// An issuer with a random secret.
    pub fn new(lifetime_secs: u64, algorithm: Algorithm) -> NonceIssuer {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            for (s, b) in secret.iter_mut().zip(t.to_le_bytes().iter().cycle()) {
                *s = *b;
            }
        }
        NonceIssuer::with_secret(secret, lifetime_secs, algorithm)
    }

    pub fn with_secret(secret: [u8; 32], lifetime_secs: u64, algorithm: Algorithm) -> NonceIssuer {
        NonceIssuer {
            secret,
            lifetime: lifetime_secs,
            algorithm,
            counts: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn mac(&self, issued: &str, realm: &str) -> String {
        // HMAC takes keys of any length; this cannot fail.
        let Ok(mut m) = HmacSha256::new_from_slice(&self.secret) else {
            return String::new();
        };
        m.update(issued.as_bytes());
        m.update(b":");
        m.update(realm.as_bytes());
        let tag = m.finalize().into_bytes();
        crate::hex(tag.get(..16).unwrap_or_default())
    }

    /// A fresh challenge for `realm` at `now` (seconds since the epoch).
    pub fn challenge(&self, realm: &str, now: u64, stale: bool) -> Challenge {
        let issued = format!("{now:x}");
        Challenge {
            realm: realm.to_string(),
            nonce: format!("{issued}.{}", self.mac(&issued, realm)),
            opaque: None,
            algorithm: self.algorithm,
            qop_auth: true,
            stale,
        }
    }

    /// Check an answer.
    pub fn check(&mut self, auth: &Authorization, c: Check<'_>) -> Verdict {
        if auth.realm != c.realm || auth.username != c.username || auth.algorithm != self.algorithm
        {
            return Verdict::Wrong;
        }
        let Some((issued, mac)) = auth.nonce.split_once('.') else {
            return Verdict::Wrong;
        };
        if mac != self.mac(issued, c.realm) {
            return Verdict::Wrong;
        }
        let Ok(issued_at) = u64::from_str_radix(issued, 16) else {
            return Verdict::Wrong;
        };
        let cnonce = auth.qop.as_ref().map_or("", |(_, cn)| cn.as_str());
        let ha1 = crate::ha1(
            auth.algorithm,
            c.username,
            c.realm,
            c.password,
            &auth.nonce,
            cnonce,
        );
        let nc_text = auth.qop.as_ref().map(|(nc, _)| format!("{nc:08x}"));
        let qop = match (&auth.qop, &nc_text) {
            (Some((_, cn)), Some(nc)) => Some((nc.as_str(), cn.as_str(), "auth")),
            _ => None,
        };
        let expected = crate::response(auth.algorithm, &ha1, &auth.nonce, qop, c.method, &auth.uri);
        if expected != auth.response {
            return Verdict::Wrong;
        }
        if c.now > issued_at.saturating_add(self.lifetime) || issued_at > c.now.saturating_add(60) {
            return Verdict::Stale;
        }
        // A nonce answered without qop counts as 1, once.
        let nc = auth.qop.as_ref().map_or(1, |(nc, _)| *nc);
        match self.counts.get_mut(&auth.nonce) {
            Some(last) if nc <= *last => Verdict::Stale,
            Some(last) => {
                *last = nc;
                Verdict::Ok
            }
            None => {
                if self.order.len() >= REMEMBERED {
                    if let Some(old) = self.order.pop_front() {
                        self.counts.remove(&old);
                    }
                }
                self.counts.insert(auth.nonce.clone(), nc);
                self.order.push_back(auth.nonce.clone());
                Verdict::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Credentials;

    const NOW: u64 = 1_790_000_000;

    fn check(now: u64) -> Check<'static> {
        Check {
            method: "REGISTER",
            realm: "sluice",
            username: "gw1",
            password: "s3cret",
            now,
        }
    }

    fn answer(c: &Challenge, password: &str, nc: u32) -> Authorization {
        Credentials {
            username: "gw1".into(),
            password: password.into(),
        }
        .authorize(c, "REGISTER", "sip:sluice.example", nc, "abc")
    }

    #[test]
    fn a_right_answer_passes_once_per_count() {
        for alg in [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha256Sess] {
            let mut issuer = NonceIssuer::with_secret([7; 32], 300, alg);
            let c = issuer.challenge("sluice", NOW, false);
            assert_eq!(
                issuer.check(&answer(&c, "s3cret", 1), check(NOW + 1)),
                Verdict::Ok
            );
            assert_eq!(
                issuer.check(&answer(&c, "s3cret", 1), check(NOW + 2)),
                Verdict::Stale,
                "a replayed count"
            );
            assert_eq!(
                issuer.check(&answer(&c, "s3cret", 2), check(NOW + 3)),
                Verdict::Ok
            );
        }
    }

    #[test]
    fn wrong_passwords_foreign_nonces_and_expiry() {
        let mut issuer = NonceIssuer::with_secret([7; 32], 300, Algorithm::Md5);
        let c = issuer.challenge("sluice", NOW, false);
        assert_eq!(
            issuer.check(&answer(&c, "guess", 1), check(NOW)),
            Verdict::Wrong
        );
        let other = NonceIssuer::with_secret([8; 32], 300, Algorithm::Md5);
        let foreign = other.challenge("sluice", NOW, false);
        assert_eq!(
            issuer.check(&answer(&foreign, "s3cret", 1), check(NOW)),
            Verdict::Wrong,
            "a nonce Sluice did not issue"
        );
        let mut forged = c.clone();
        forged.nonce = format!("{:x}.{}", NOW + 1000, c.nonce.split_once('.').unwrap().1);
        assert_eq!(
            issuer.check(&answer(&forged, "s3cret", 1), check(NOW)),
            Verdict::Wrong
        );
        assert_eq!(
            issuer.check(&answer(&c, "s3cret", 1), check(NOW + 301)),
            Verdict::Stale,
            "expired: right password, new nonce"
        );
        let mut no_qop = c.clone();
        no_qop.qop_auth = false;
        let mut issuer = NonceIssuer::with_secret([7; 32], 300, Algorithm::Md5);
        assert_eq!(
            issuer.check(&answer(&no_qop, "s3cret", 1), check(NOW)),
            Verdict::Ok
        );
        assert_eq!(
            issuer.check(&answer(&no_qop, "s3cret", 1), check(NOW)),
            Verdict::Stale
        );
    }
}
