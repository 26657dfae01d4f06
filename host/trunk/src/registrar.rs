//! A gateway or provider registering to Sluice (an accept-register trunk): the REGISTER is
//! challenged (digest, Sluice's nonces), a right answer adds, refreshes or removes bindings
//! (`Expires: 0`, or `Contact: *` to remove them all), and calls to the trunk go to a live
//! binding. Bindings expire on their own; the 200 lists every binding with its time left.

use sluice_auth::server::Check;
use sluice_auth::{Algorithm, Authorization, NonceIssuer, Verdict};
use sluice_sip::{fields, HeaderName, Message, NameAddr};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Expiry bounds Sluice grants, in seconds.
pub const MIN_EXPIRES: u32 = 60;
pub const MAX_EXPIRES: u32 = 3600;
/// Bindings per trunk (a gateway with several contacts; no more).
pub const MAX_BINDINGS: usize = 16;
/// How long Sluice's nonces are good for.
const NONCE_LIFETIME: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI registered.
    pub contact: String,
    pub expires_at: Instant,
    /// Where the REGISTER came from: a gateway behind NAT is reached there.
    pub source: SocketAddr,
}

/// What to answer a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarReply {
    /// 401 with this `WWW-Authenticate` value. `failed`: an answer was given and was wrong
    /// (count it, log it).
    Challenge { header: String, failed: bool },
    /// 200 with these `Contact` values (each with `;expires=`).
    Ok { contacts: Vec<String> },
    /// Another status: 400 for a bad Contact, 423 (with `Min-Expires`), 403 for a user that is
    /// not the trunk's.
    Refuse { status: u16, reason: &'static str },
}

#[derive(Debug)]
pub struct Registrar {
    realm: String,
    username: String,
    password: String,
    issuer: NonceIssuer,
    bindings: Vec<Binding>,
}

impl Registrar {
    pub fn new(realm: &str, username: &str, password: &str) -> Registrar {
        Registrar {
            realm: realm.into(),
            username: username.into(),
            password: password.into(),
            issuer: NonceIssuer::new(NONCE_LIFETIME, Algorithm::Md5),
            bindings: Vec::new(),
        }
    }

    /// The same, with a fixed nonce secret and algorithm (tests).
    pub fn with_issuer(
        realm: &str,
        username: &str,
        password: &str,
        issuer: NonceIssuer,
    ) -> Registrar {
        Registrar {
            realm: realm.into(),
            username: username.into(),
            password: password.into(),
            issuer,
            bindings: Vec::new(),
        }
    }

    /// Live bindings, most recently refreshed last.
    pub fn bindings(&self, now: Instant) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(move |b| b.expires_at > now)
    }

    /// Whether a binding (live or expired, not yet dropped) was registered from `addr`.
    pub fn registered_from(&self, addr: SocketAddr) -> bool {
        self.bindings.iter().any(|b| b.source == addr)
    }

    /// The binding calls go to: the most recently refreshed live one.
    pub fn target(&self, now: Instant) -> Option<&Binding> {
        self.bindings(now).last()
    }

    /// A binding another process took (an upgrade's predecessor): kept as if registered here.
    pub fn adopt(&mut self, binding: Binding) {
        self.bindings
            .retain(|b| b.contact != binding.contact || b.source != binding.source);
        self.bindings.push(binding);
    }

    /// Drop expired bindings; when the next one expires.
    pub fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.bindings.retain(|b| b.expires_at > now);
        self.bindings.iter().map(|b| b.expires_at).min()
    }

    /// A REGISTER from `source`; `unix_now` is the wall clock in seconds (nonces carry it).
    pub fn on_register(
        &mut self,
        now: Instant,
        unix_now: u64,
        req: &Message,
        source: SocketAddr,
    ) -> RegistrarReply {
        let auth = req
            .header(&HeaderName::Authorization)
            .and_then(Authorization::parse);
        let Some(auth) = auth else {
            return self.challenge(unix_now, false, false);
        };
        let check = Check {
            method: "REGISTER",
            realm: &self.realm,
            username: &self.username,
            password: &self.password,
            now: unix_now,
        };
        match self.issuer.check(&auth, check) {
            Verdict::Ok => {}
            Verdict::Stale => return self.challenge(unix_now, true, false),
            Verdict::Wrong => return self.challenge(unix_now, false, true),
        }
        self.update(now, req, source)
    }

    fn challenge(&self, unix_now: u64, stale: bool, failed: bool) -> RegistrarReply {
        RegistrarReply::Challenge {
            header: self
                .issuer
                .challenge(&self.realm, unix_now, stale)
                .to_header(),
            failed,
        }
    }

    fn update(&mut self, now: Instant, req: &Message, source: SocketAddr) -> RegistrarReply {
        let default = req
            .header(&HeaderName::Expires)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(MAX_EXPIRES);
        let contacts: Vec<&str> = req.headers.values(&HeaderName::Contact).collect();
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || default != 0 {
                return RegistrarReply::Refuse {
                    status: 400,
                    reason: "Contact * needs Expires: 0 alone",
                };
            }
            self.bindings.clear();
            return RegistrarReply::Ok {
                contacts: Vec::new(),
            };
        }
        let mut changes = Vec::new();
        for c in &contacts {
            let Some(n) = NameAddr::parse(c) else {
                return RegistrarReply::Refuse {
                    status: 400,
                    reason: "Bad Contact",
                };
            };
            let expires = fields::param(n.params, "expires")
                .and_then(|v| v.trim_matches('"').parse::<u32>().ok())
                .unwrap_or(default);
            if expires != 0 && expires < MIN_EXPIRES {
                return RegistrarReply::Refuse {
                    status: 423,
                    reason: "Interval Too Brief",
                };
            }
            changes.push((n.uri.to_string(), expires.min(MAX_EXPIRES)));
        }
        for (uri, expires) in changes {
            self.bindings
                .retain(|b| !b.contact.eq_ignore_ascii_case(&uri));
            if expires > 0 {
                if self.bindings.len() >= MAX_BINDINGS {
                    self.bindings.remove(0);
                }
                self.bindings.push(Binding {
                    contact: uri,
                    expires_at: now
                        .checked_add(Duration::from_secs(u64::from(expires)))
                        .unwrap_or(now),
                    source,
                });
            }
        }
        let contacts = self
            .bindings(now)
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                format!("<{}>;expires={left}", b.contact)
            })
            .collect();
        RegistrarReply::Ok { contacts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_auth::{Challenge, Credentials};

    const UNIX: u64 = 1_790_000_000;

    fn registrar() -> Registrar {
        Registrar::with_issuer(
            "gw.sluice",
            "gw1",
            "s3cret",
            NonceIssuer::with_secret([1; 32], 300, Algorithm::Md5),
        )
    }

    fn register(contact: &str, expires: Option<u32>, auth: Option<String>) -> Message {
        let mut m = Message::request(sluice_sip::Method::Register, "sip:gw.sluice");
        m.headers.push(HeaderName::Contact, contact);
        if let Some(e) = expires {
            m.headers.push(HeaderName::Expires, e.to_string());
        }
        if let Some(a) = auth {
            m.headers.push(HeaderName::Authorization, a);
        }
        m
    }

    fn answer(challenge: &str, password: &str, nc: u32) -> String {
        let c = Challenge::parse(challenge).unwrap();
        Credentials {
            username: "gw1".into(),
            password: password.into(),
        }
        .authorize(&c, "REGISTER", "sip:gw.sluice", nc, "cn")
        .to_header()
    }

    fn src() -> SocketAddr {
        "127.0.0.30:5060".parse().unwrap()
    }

    #[test]
    fn challenge_then_bind_refresh_and_unbind() {
        let t0 = Instant::now();
        let mut r = registrar();
        let RegistrarReply::Challenge { header, failed } = r.on_register(
            t0,
            UNIX,
            &register("<sip:gw@10.0.0.9:5060>", Some(600), None),
            src(),
        ) else {
            panic!()
        };
        assert!(!failed);
        let reply = r.on_register(
            t0,
            UNIX,
            &register(
                "<sip:gw@10.0.0.9:5060>",
                Some(600),
                Some(answer(&header, "s3cret", 1)),
            ),
            src(),
        );
        assert_eq!(
            reply,
            RegistrarReply::Ok {
                contacts: vec!["<sip:gw@10.0.0.9:5060>;expires=600".into()]
            }
        );
        let b = r.target(t0).unwrap();
        assert_eq!(b.source, src());
        assert!(r.target(t0 + Duration::from_secs(600)).is_none(), "expired");
        // A refresh with a longer expiry is capped; an unregister removes the binding.
        let reply = r.on_register(
            t0,
            UNIX,
            &register(
                "<sip:gw@10.0.0.9:5060>;expires=99999",
                None,
                Some(answer(&header, "s3cret", 2)),
            ),
            src(),
        );
        assert!(
            matches!(&reply, RegistrarReply::Ok { contacts } if contacts[0].ends_with("expires=3600"))
        );
        let reply = r.on_register(
            t0,
            UNIX,
            &register(
                "<sip:gw@10.0.0.9:5060>",
                Some(0),
                Some(answer(&header, "s3cret", 3)),
            ),
            src(),
        );
        assert_eq!(reply, RegistrarReply::Ok { contacts: vec![] });
        assert!(r.target(t0).is_none());
    }

    #[test]
    fn wrong_passwords_replays_short_intervals_and_star() {
        let t0 = Instant::now();
        let mut r = registrar();
        let RegistrarReply::Challenge { header, .. } =
            r.on_register(t0, UNIX, &register("<sip:gw@h>", None, None), src())
        else {
            panic!()
        };
        let wrong = r.on_register(
            t0,
            UNIX,
            &register("<sip:gw@h>", None, Some(answer(&header, "guess", 1))),
            src(),
        );
        assert!(matches!(
            wrong,
            RegistrarReply::Challenge { failed: true, .. }
        ));
        let ok = register("<sip:gw@h>", None, Some(answer(&header, "s3cret", 1)));
        assert!(matches!(
            r.on_register(t0, UNIX, &ok, src()),
            RegistrarReply::Ok { .. }
        ));
        let replay = r.on_register(t0, UNIX, &ok, src());
        assert!(
            matches!(&replay, RegistrarReply::Challenge { header, failed: false } if header.contains("stale=true")),
            "{replay:?}"
        );
        let brief = r.on_register(
            t0,
            UNIX,
            &register("<sip:gw@h>", Some(10), Some(answer(&header, "s3cret", 2))),
            src(),
        );
        assert!(matches!(brief, RegistrarReply::Refuse { status: 423, .. }));
        r.on_register(
            t0,
            UNIX,
            &register("<sip:gw2@h>", Some(600), Some(answer(&header, "s3cret", 3))),
            src(),
        );
        assert_eq!(r.bindings(t0).count(), 2);
        let all = r.on_register(
            t0,
            UNIX,
            &register("*", Some(0), Some(answer(&header, "s3cret", 4))),
            src(),
        );
        assert_eq!(all, RegistrarReply::Ok { contacts: vec![] });
        assert_eq!(r.bindings(t0).count(), 0);
        let stale = r.on_register(
            t0,
            UNIX + 301,
            &register("<sip:gw@h>", None, Some(answer(&header, "s3cret", 5))),
            src(),
        );
        assert!(
            matches!(&stale, RegistrarReply::Challenge { header, .. } if header.contains("stale=true"))
        );
    }
}
