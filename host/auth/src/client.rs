//! Answering a challenge: the `Authorization` / `Proxy-Authorization` value for a request.

use crate::challenge::{Algorithm, Challenge};
use crate::params::{self, quote};

/// A username and password for a realm (a trunk's authentication ID and secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A digest answer, as sent or as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    /// `(nc, cnonce)` when `qop=auth` was used.
    pub qop: Option<(u32, String)>,
}

/// A client nonce: 16 random bytes, hex.
pub fn cnonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No system randomness: a time-based value still differs per request.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    crate::hex(&b)
}

impl Credentials {
    /// The answer to `challenge` for a request `method` to `uri` (the Request-URI as sent);
    /// `nc` counts this client's uses of the nonce (from 1).
    pub fn authorize(
        &self,
        challenge: &Challenge,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> Authorization {
        let alg = challenge.algorithm;
        let ha1 = crate::ha1(
            alg,
            &self.username,
            &challenge.realm,
            &self.password,
            &challenge.nonce,
            cnonce,
        );
        let nc_text = format!("{nc:08x}");
        let qop = challenge
            .qop_auth
            .then_some((nc_text.as_str(), cnonce, "auth"));
        let response = crate::response(alg, &ha1, &challenge.nonce, qop, method, uri);
        Authorization {
            username: self.username.clone(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_string(),
            response,
            algorithm: alg,
            opaque: challenge.opaque.clone(),
            qop: challenge.qop_auth.then(|| (nc, cnonce.to_string())),
        }
    }
}

impl Authorization {
    /// The header value.
    pub fn to_header(&self) -> String {
        let mut s = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm.as_str()
        );
        if let Some((nc, cnonce)) = &self.qop {
            s.push_str(&format!(
                ", qop=auth, nc={nc:08x}, cnonce={}",
                quote(cnonce)
            ));
        }
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            s.push_str(&quote(o));
        }
        s
    }

    /// Read an `Authorization` / `Proxy-Authorization` value.
    pub fn parse(value: &str) -> Option<Authorization> {
        let v = value.trim_start();
        let (scheme, rest) = v.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let p = params::parse(rest)?;
        let get = |n: &str| params::get(&p, n).map(str::to_string);
        let algorithm = match params::get(&p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a)?,
        };
        let qop = match params::get(&p, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = u32::from_str_radix(params::get(&p, "nc")?, 16).ok()?;
                Some((nc, get("cnonce")?))
            }
            Some(_) => return None,
        };
        Some(Authorization {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?.to_ascii_lowercase(),
            algorithm,
            opaque: get("opaque"),
            qop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            password: "Circle of Life".into(),
        }
    }

    /// RFC 7616 §3.9.1: the worked example, MD5 and SHA-256 (the RFC's method is GET).
    #[test]
    fn rfc_7616_examples() {
        let mut c = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let a = creds().authorize(&c, "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(
            a.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        c.algorithm = Algorithm::Md5;
        let a = creds().authorize(&c, "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(a.response, "8ca523f5e9506fed4657c9700eebdbec");
        assert!(a.to_header().contains("nc=00000001"));
        assert_eq!(Authorization::parse(&a.to_header()).unwrap(), a);
    }

    /// RFC 2617 §3.5 (no `-sess`, qop=auth), MD5: the classic vector.
    #[test]
    fn rfc_2617_example() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        // RFC 2617 spells the password with a capital O.
        let rfc2617 = Credentials {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
        };
        let a = rfc2617.authorize(&c, "GET", "/dir/index.html", 1, "0a4f113b");
        assert_eq!(a.response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn without_qop_the_rfc_2069_form() {
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        let a = creds().authorize(&c, "REGISTER", "sip:example.net", 1, "c");
        assert!(a.qop.is_none());
        assert!(!a.to_header().contains("qop"));
        let expected = crate::hash(
            Algorithm::Md5,
            &[
                &crate::hash(Algorithm::Md5, &["Mufasa", "r", "Circle of Life"]),
                "n",
                &crate::hash(Algorithm::Md5, &["REGISTER", "sip:example.net"]),
            ],
        );
        assert_eq!(a.response, expected);
    }

    #[test]
    fn the_password_never_shows() {
        assert!(!format!("{:?}", creds()).contains("Circle"));
        assert_ne!(cnonce(), cnonce());
    }
}
